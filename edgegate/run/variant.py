"""One variant of a run (FP32 baseline or INT8 candidate): steps 5-7, each a database row.

``run_variant`` starts the variant's row, compiles its graphs for its target, benchmarks
them, runs the eval split through them and scores it, stores metrics, latency samples and
artifacts, and always ends the row with a final status (``completed`` or ``error``),
whatever happens in between. The toolchain that ran the graphs (``edgegate.toolchain``) is
recorded in the row's details and carried in the result (``VariantResult.toolchain``).
``golden_variant`` reads a stored golden back instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgegate import __version__
from edgegate.artifacts import ArtifactCache, sha256_file
from edgegate.db import ExperimentDB, StoredMetric
from edgegate.errors import EdgeGateError
from edgegate.metrics import Measurement, Source
from edgegate.packs.adapters import Prediction
from edgegate.packs.sample import Sample
from edgegate.progress import Progress
from edgegate.results import RUN_KEY_FIELD, ArtifactKind, VariantResult, new_run_key, open_run_dir
from edgegate.run.context import RunContext
from edgegate.run.outputs import ArtifactFile, write_variant_outputs
from edgegate.run.runners import GraphFeeds, variant_runner
from edgegate.run.stages import (
    compile_graphs,
    evaluate,
    variant_metrics,
    with_placement,
)
from edgegate.stats import summarize_latency
from edgegate.targets.base import BenchmarkResult, Target, Variant
from edgegate.toolchain import Toolchain, graph_toolchain, recorded_toolchain, run_toolchain

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
    try:
        work_dir = open_run_dir(ctx.home, run_id, run_key)
        target.attach_run(db, run_id)  # remote targets record their jobs against this run (AI Hub's ledger)
        # 5. compile
        with progress.stage(f"{variant.value}: compile for {target.name}"):
            compiled = compile_graphs(target, plan.onnx_paths, scope.cache, variant)
        # 6. benchmark
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
        # 7. infer + score
        counts: dict[str, int] = {}
        support_split = ctx.spec.evaluation.support_split
        ev = evaluate(
            ctx.adapter, variant_runner(target, compiled, counts=counts), scope.eval_samples, ctx.scorers,
            plan.reference, progress, f"{variant.value}: infer + score on {target.name}",
            support=ctx.pack.samples(support_split) if support_split else (),
        )
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
            bench.memory_method, {g: n / max(1, len(scope.eval_samples)) for g, n in counts.items()},
            toolchain=toolchain, run_dir=work_dir,
        )
        return MeasuredVariant(result, ev.predictions)
    except BaseException as exc:
        error = exc.message if isinstance(exc, EdgeGateError) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        try:
            target.close()  # board targets remove their scratch files on the board and disconnect here
        finally:
            _finish(db, run_id, status, error, toolchain)


def _finish(db: ExperimentDB, run_id: int, status: str, error: str | None, toolchain: Toolchain | None) -> None:
    """End the row with its final status. When the database cannot take it (a full disk),
    the row says "running" with this process gone, and the next open of the database
    marks it aborted (``ExperimentDB``); the failure that ended the run is what propagates."""
    try:
        db.finish_run(run_id, status, error=error, details=None if toolchain is None else {"toolchain": toolchain})
    except Exception as exc:  # noqa: BLE001  never mask the run's own failure with the bookkeeping's
        if status != "error":
            raise
        log.warning("run %s: final status '%s' not stored: %s", run_id, status, exc)


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
