"""One variant of a run (FP32 baseline or INT8 candidate): steps 5-7, each a database row.

``run_variant`` starts the variant's row, compiles its graphs for its target, benchmarks
them, runs the eval split through them and scores it, stores metrics, latency samples and
artifacts, and always ends the row with a final status (``completed`` or ``error``),
whatever happens in between. The toolchain that ran the graphs (``edgegate.toolchain``) is
recorded in the row's details and carried in the result (``VariantResult.toolchain``).
``golden_variant`` reads a stored golden back instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgegate import __version__
from edgegate.artifacts import ArtifactCache, atomic_write, sha256_file
from edgegate.db import ExperimentDB, StoredMetric
from edgegate.errors import EdgeGateError
from edgegate.metrics import Measurement, Source
from edgegate.packs.adapters import Prediction
from edgegate.packs.sample import Sample
from edgegate.progress import Progress
from edgegate.report.evidence import utc_timestamp
from edgegate.results import (
    RUN_KEY_FIELD,
    ArtifactKind,
    VariantResult,
    new_run_key,
    open_run_dir,
)
from edgegate.run.context import RunContext
from edgegate.run.outputs import (
    ArtifactFile,
    load_predictions,
    predictions_json,
    write_variant_outputs,
)
from edgegate.run.parallel import default_jobs, predict_in_workers, split_evenly
from edgegate.run.reuse import (
    ComputedBy,
    adapter_key,
    compiled_digests,
    samples_digest,
    target_identity,
)
from edgegate.run.runners import GraphFeeds, variant_runner
from edgegate.run.stages import (
    Evaluation,
    compile_graphs,
    predict,
    score_predictions,
    variant_metrics,
    with_placement,
)
from edgegate.stats import summarize_latency
from edgegate.targets.base import BenchmarkResult, CompiledGraph, Target, Variant
from edgegate.toolchain import (
    Toolchain,
    graph_toolchain,
    recorded_toolchain,
    run_toolchain,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunScope:
    """What both variants of one run share."""

    ctx: RunContext
    db: ExperimentDB
    cache: ArtifactCache
    progress: Progress
    invocation: str  # one id for every row this run writes
    model_digest: str  # of the FP32 graphs
    eval_samples: Sequence[Sample]
    bench_feeds: GraphFeeds  # what the benchmark feeds each graph
    jobs: int | None = None  # prediction worker processes (--jobs); None: from the host (run.parallel)

    def computed_by(self, run_id: int, run_key: str | None) -> ComputedBy:
        """A variant of this run as the computer of a result a later run may reuse."""
        return ComputedBy(run_id, run_key or "", self.ctx.spec.name, self.ctx.device.name, utc_timestamp())


@dataclass(frozen=True)
class VariantPlan:
    """One variant to measure: which graphs, on which target, scored against what."""

    variant: Variant
    target: Target
    onnx_paths: Mapping[str, Path]  # graph -> the ONNX file to compile
    size_bytes: int  # its weights (metric model_size_*)
    inputs: Sequence[ArtifactFile]  # the files it was made from, recorded with its run
    reference: Sequence[Prediction] | None = None  # the FP32 predictions a candidate is scored against
    golden_run_id: int | None = None
    before_benchmark: Callable[[], None] | None = None  # e.g. wait for the reproducibility worker


@dataclass(frozen=True)
class MeasuredVariant:
    result: VariantResult
    predictions: list[Prediction]  # one per eval sample


def _store_measurements(db: ExperimentDB, run_id: int, metrics: Mapping[str, Measurement], bench: BenchmarkResult) -> None:
    store_metrics(db, run_id, metrics)
    for t in bench.timings:
        db.add_latency_samples(run_id, t.graph, t.samples_ms, bench.source.value, t.process_ids or None)


def store_metrics(db: ExperimentDB, run_id: int, metrics: Mapping[str, Measurement]) -> None:
    db.add_metrics(run_id, [StoredMetric(k, v.value, v.unit, v.source.value) for k, v in metrics.items()])


def record_artifact(db: ExperimentDB, run_id: int, kind: ArtifactKind, graph: str | None, path: Path) -> dict[str, str | None]:
    """Record one file of a run with its sha256; returns the row as results carry it."""
    digest = sha256_file(path)
    db.add_artifact(run_id, kind.value, graph, path, digest)
    return {"kind": kind.value, "graph": graph, "path": str(path), "sha256": digest}


def run_variant(scope: RunScope, plan: VariantPlan) -> MeasuredVariant:
    """Steps 5-7 for one variant: compile, benchmark, infer + score; one database row."""
    ctx, db, progress, target, variant = scope.ctx, scope.db, scope.progress, plan.target, plan.variant
    run_key = new_run_key()  # names the run's directory: ids repeat across databases, keys do not
    run_id = db.start_run(
        invocation=scope.invocation,
        pipeline=ctx.spec.name,
        device=ctx.device.name,
        variant=variant.value,
        model_digest=scope.model_digest,
        pack_digest=ctx.pack.digest,
        config_digest=ctx.config_digest,
        golden_run_id=plan.golden_run_id,
        details={
            "target": target.describe()["name"],
            "timing_source": target.source.value,
            "benchmark": ctx.spec.benchmark.model_dump(),  # what `compare --rebench` repeats
            "edgegate": __version__,
            "pipeline_path": str(Path(ctx.spec.source_path).resolve()),
            "scorers": [sc.name for sc in ctx.scorers],
            RUN_KEY_FIELD: run_key,
        },
    )
    status, error = "error", None
    toolchain: Toolchain | None = None  # known once the graphs ran
    reused: dict[str, dict[str, Any]] = {}
    try:
        work_dir = open_run_dir(ctx.home, run_id, run_key)
        target.attach_run(db, run_id)  # remote targets record their jobs against this run (AI Hub's ledger)
        # 5. compile
        with progress.stage(f"{variant.value}: compile for {target.name}"):
            compiled = compile_graphs(target, plan.onnx_paths, scope.cache, variant)
        # 6. benchmark
        if plan.before_benchmark is not None:
            plan.before_benchmark()
        b = ctx.spec.benchmark
        with progress.stage(f"{variant.value}: benchmark ({b.warmup} warmup + {b.repeats} repeats per graph, "
                            f"{b.processes} process{'es' if b.processes > 1 else ''})"):
            bench = target.benchmark(
                list(compiled.values()), scope.bench_feeds, warmup=b.warmup, repeats=b.repeats,
                min_seconds=b.min_seconds, work_dir=work_dir, processes=b.processes,
            )
        compiled = with_placement(compiled, bench)
        toolchain = run_toolchain(
            [graph_toolchain(c.details) for c in compiled.values()], bench.details.get("toolchain"), target.describe()
        )
        # 7. infer (or reuse deterministic predictions) + score
        support_split = ctx.spec.evaluation.support_split
        support = ctx.pack.samples(support_split) if support_split else []
        with progress.stage(f"{variant.value}: infer + score on {target.name}"):
            preds = variant_predictions(scope, plan, compiled, scope.computed_by(run_id, run_key), support)
            ev = Evaluation(preds.eval, score_predictions(
                ctx.scorers, preds.eval, scope.eval_samples, plan.reference, support, preds.support))
        if preds.computed_by is not None:
            reused["predictions"] = preds.computed_by.to_dict()
            progress.info(f"{variant.value}: predictions reused from run {preds.computed_by.run_id} "
                          f"(deterministic on {target.name}; --no-cache computes them again)")
        measured = variant_metrics(bench, compiled, ev.scores, plan.size_bytes)
        _store_measurements(db, run_id, measured.metrics, bench)
        outputs = write_variant_outputs(
            work_dir, scope.bench_feeds, list(compiled), scope.eval_samples, ev.predictions,
            ctx.scorers, ev.scores,
        )
        artifacts = [
            record_artifact(db, run_id, kind, graph, path)
            for kind, graph, path in [
                *plan.inputs,
                *[(ArtifactKind.COMPILED, c.graph, f) for c in compiled.values() for f in c.files],
                *outputs,
            ]
        ]
        status = "completed"
        result = VariantResult(
            variant, run_id, target.describe(), measured.metrics, measured.latency,
            compiled, artifacts,
            bench.memory_method, {g: n / max(1, len(scope.eval_samples)) for g, n in preds.counts.items()},
            toolchain=toolchain, run_dir=work_dir, run_key=run_key, reused=reused,
        )
        return MeasuredVariant(result, ev.predictions)
    except BaseException as exc:
        error = exc.message if isinstance(exc, EdgeGateError) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        try:
            target.close()  # board targets remove their scratch files on the board and disconnect here
        finally:
            _finish(db, run_id, status, error, toolchain, reused)


def _finish(
    db: ExperimentDB, run_id: int, status: str, error: str | None, toolchain: Toolchain | None,
    reused: Mapping[str, Any],
) -> None:
    """End the row with its final status. When the database cannot take it (a full disk),
    the row says "running" with this process gone, and the next open of the database
    marks it aborted (``ExperimentDB``); the failure that ended the run is what propagates."""
    try:
        details = {**({"toolchain": toolchain} if toolchain is not None else {}), **({"reused": dict(reused)} if reused else {})}
        db.finish_run(run_id, status, error=error, details=details or None)
    except Exception as exc:  # noqa: BLE001  never mask the run's own failure with the bookkeeping's
        if status != "error":
            raise
        log.warning("run %s: final status '%s' not stored: %s", run_id, status, exc)


@dataclass(frozen=True)
class VariantPredictions:
    eval: list[Prediction]  # one per eval sample
    support: list[Prediction]  # one per support sample
    counts: dict[str, int]  # graph -> calls
    computed_by: ComputedBy | None  # the run that computed them, when reused


def variant_predictions(
    scope: RunScope, plan: VariantPlan, compiled: Mapping[str, CompiledGraph], me: ComputedBy,
    support: Sequence[Sample],
) -> VariantPredictions:
    """Every eval (and support) sample's prediction through the compiled graphs; on a
    deterministic target taken from the artifact cache when this exact computation ran
    before (``run.reuse``: compiled bytes, target, samples, adapter and its options, code)."""
    ctx, target = scope.ctx, plan.target
    what = f"{plan.variant.value}: infer on {target.name}"

    def compute() -> VariantPredictions:
        jobs = scope.jobs or default_jobs(target.describe().get("kind", ""), len(scope.eval_samples))
        if jobs > 1 and not target.batches_calls:
            return _predict_in_workers(scope, plan, compiled, support, jobs)
        counts: dict[str, int] = {}
        runner = variant_runner(target, compiled, counts=counts)
        preds = predict(ctx.adapter, runner, scope.eval_samples, scope.progress, what)
        support_preds = predict(ctx.adapter, runner, support, scope.progress, what + " (support)")
        return VariantPredictions(preds, support_preds, counts, None)

    if not target.deterministic:
        return compute()
    key = {
        "variant": plan.variant.value,
        "target": target_identity(target),
        "device": ctx.device.model_dump(mode="json"),  # e.g. the CPU's intra_op_threads
        "compiled": compiled_digests(compiled),
        "pack": ctx.pack.digest,
        "samples": samples_digest(scope.eval_samples),
        "support": samples_digest(support),
        "graphs": {g: spec.model_dump(mode="json") for g, spec in ctx.spec.model.graphs.items()},
        **adapter_key(ctx.spec, [ctx.adapter, *ctx.scorers]),
    }
    fresh: list[VariantPredictions] = []

    def build(d: Path) -> dict[str, Any]:
        fresh.append(compute())
        atomic_write(d / "predictions.json", json.dumps(predictions_json(scope.eval_samples, fresh[0].eval)))
        atomic_write(d / "support.json", json.dumps(predictions_json(support, fresh[0].support)))
        return {"counts": fresh[0].counts, "computed_by": me.to_dict()}

    entry = scope.cache.get_or_build("predictions", key, build)
    if fresh:
        return fresh[0]
    preds = load_predictions(entry.file("predictions.json"), scope.eval_samples)
    support_preds = load_predictions(entry.file("support.json"), support)
    if preds is None or support_preds is None:  # the manifest's sha256 matched: cannot happen
        return compute()
    return VariantPredictions(preds, support_preds, {g: int(n) for g, n in entry.meta["counts"].items()},
                              ComputedBy.from_dict(entry.meta["computed_by"]))


def _predict_in_workers(
    scope: RunScope, plan: VariantPlan, compiled: Mapping[str, CompiledGraph], support: Sequence[Sample], jobs: int,
) -> VariantPredictions:
    """``run.parallel``: `jobs` worker processes, each on a contiguous slice, merged in order."""
    ctx = scope.ctx
    eval_slices = split_evenly([s.id for s in scope.eval_samples], jobs)
    support_slices = split_evenly([s.id for s in support], jobs) if support else []
    slices = [(scope.eval_samples[0].split, ids) for ids in eval_slices] + [(support[0].split, ids) for ids in support_slices]
    with scope.progress.stage(f"{plan.variant.value}: infer on {plan.target.name} in {len(eval_slices)} worker processes"):
        parts, counts = predict_in_workers(
            ctx.spec.source_path, str(ctx.device.source_path) if ctx.device.source_path else ctx.device.name,
            ctx.home, compiled, slices, jobs, baseline=plan.target is ctx.baseline_target,
        )
    preds = [p for part in parts[: len(eval_slices)] for p in part]
    support_preds = [p for part in parts[len(eval_slices):] for p in part]
    return VariantPredictions(preds, support_preds, counts, None)


def golden_variant(db: ExperimentDB, golden_id: int) -> VariantResult:
    """The golden run's stored measurements, as a variant result (with its toolchain when it
    recorded one)."""
    run = db.get_run(golden_id)
    stored = db.metrics(golden_id)
    metrics = {k: Measurement(v.value, Source(v.source), v.unit) for k, v in stored.items()}
    samples = db.latency_samples(golden_id)
    summaries = {g: summarize_latency(s) for g, s in samples.items() if s}
    toolchain = recorded_toolchain(run.details if run else None)
    return VariantResult(
        Variant(run.variant if run else "fp32"), golden_id, {"name": "golden"}, metrics, summaries,
        artifacts=db.artifacts(golden_id), from_golden=True, toolchain=toolchain,
    )
