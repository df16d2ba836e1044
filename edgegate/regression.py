"""The regression-testing utility a CI pipeline calls: compare two models, or two stored runs.

``compare_models`` evaluates a baseline and a candidate model on the same PromptPack split
through the same adapter and compares every metric (``edgegate.compare``), with paired
statistics from the per-sample records. ``compare_runs`` does the same for two runs
already in the ExperimentDB, adding latency significance from their stored samples; runs
scored on different PromptPacks or run on different toolchains (``edgegate.toolchain``) are
refused unless allowed.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegate import __version__
from edgegate.compare import (
    Evidence,
    Threshold,
    compare_metrics,
    notes_for,
    verdict_for,
)
from edgegate.config import PipelineSpec
from edgegate.db import ExperimentDB, Run, StoredMetric
from edgegate.errors import InputError
from edgegate.metrics import get_metric
from edgegate.packs.adapters import (
    Adapter,
    DeclaresInputs,
    GraphRunner,
    Prediction,
    predict_sample,
)
from edgegate.packs.promptpack import PromptPack, load_promptpack
from edgegate.packs.sample import Sample
from edgegate.packs.scorers import Scorer, ScoreResult, get_scorer
from edgegate.results import ArtifactKind, artifacts_of_kind, first_artifact
from edgegate.run.context import make_adapter
from edgegate.run.stages import combined_aggregate, score_predictions
from edgegate.targets.base import CompiledGraph, Target
from edgegate.toolchain import check_toolchains, drift_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSpec:
    """What is compared: the modality and task, the scorers that score it and the metrics kept
    (all of the scorers' metrics when `metrics` is None)."""

    modality: str
    task: str
    metrics: Sequence[str] | None = None
    scorers: Sequence[str] | None = None


@dataclass(frozen=True)
class EvalConfig:
    promptpack: str | Path | PromptPack
    split: str = "eval"
    batch_size: int = 16  # samples predicted between progress updates / result flushes
    limit: int | None = None
    seed: int = 0  # with `limit`, which samples are drawn (a seeded random subset)
    support_split: str | None = None


@dataclass(frozen=True)
class CompiledModel:
    """Graphs compiled for a target (e.g. the QNN HTP emulator); runs through that target."""

    target: Target
    graphs: Mapping[str, CompiledGraph]


# A task's default scorer when TaskSpec names none (a PromptPack task -> its scorer).
_TASK_SCORERS = {
    "detection": "detection", "intent-classification": "intent", "language-modeling": "language-model",
    "image-classification": "classification", "object-detection": "coco-detection",
    "text-classification": "text-classification",
}


def _graph_names(adapter: Adapter) -> list[str]:
    if not isinstance(adapter, DeclaresInputs):
        raise InputError(f"adapter {type(adapter).__name__} does not declare its graphs (expected_inputs)")
    return list(adapter.expected_inputs())


def _torch_runner(module: Any) -> Any:
    import torch

    module = module.eval()

    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().numpy() for o in out]

    return run


def _onnx_runner(path: Path) -> Any:
    from edgegate.targets.ort_runtime import open_session

    sess = open_session(str(path), "cpu", {})
    return lambda feeds: sess.run(None, dict(feeds))


def model_runner(model: Any, adapter: Adapter) -> tuple[GraphRunner, str]:
    """A GraphRunner for a model given as a torch module, an ONNX file, a mapping of graph
    name to either, or a CompiledModel; plus where it runs (a timing source name)."""
    import torch

    names = _graph_names(adapter)
    if isinstance(model, CompiledModel):
        sessions = {g: model.target.open(c) for g, c in model.graphs.items()}
        missing = [g for g in names if g not in sessions]
        if missing:
            raise InputError(f"compiled model has no graph {missing[0]!r} (it has {sorted(sessions)})")
        return (lambda g, feeds: sessions[g].run(feeds)), model.target.source.value
    if not isinstance(model, Mapping):
        if len(names) != 1:
            raise InputError(
                f"the adapter runs {len(names)} graphs ({', '.join(names)}): pass the model as a "
                "mapping of graph name to model"
            )
        model = {names[0]: model}
    per_graph = {}
    for g in names:
        if g not in model:
            raise InputError(f"model has no graph {g!r} (it has {sorted(model)})")
        m = model[g]
        if isinstance(m, torch.nn.Module):
            per_graph[g] = _torch_runner(m)
        elif isinstance(m, (str, Path)) and Path(m).suffix == ".onnx":
            if not Path(m).is_file():
                raise InputError(f"model graph {g!r}: ONNX file not found: {m}")
            per_graph[g] = _onnx_runner(Path(m))
        else:
            raise InputError(f"model graph {g!r}: expected a torch.nn.Module or an .onnx path, got {type(m).__name__}")
    return (lambda g, feeds: per_graph[g](feeds)), "host-cpu"


def _samples(pack: PromptPack, cfg: EvalConfig, split: str) -> list[Sample]:
    samples = pack.samples(split)
    if cfg.limit is not None and cfg.limit < len(samples):
        idx = sorted(random.Random(cfg.seed).sample(range(len(samples)), cfg.limit))
        samples = [samples[i] for i in idx]
    return samples


def _predict(adapter: Adapter, run: GraphRunner, samples: Sequence[Sample], batch_size: int) -> list[Prediction]:
    preds: list[Prediction] = []
    for start in range(0, len(samples), max(1, batch_size)):
        chunk = samples[start : start + batch_size]
        preds.extend(predict_sample(adapter, s, run) for s in chunk)
        log.debug("predicted %d/%d samples", len(preds), len(samples))
    return preds


def _records(scorers: Sequence[Scorer], results: Sequence[ScoreResult]) -> list[dict[str, Any]]:
    n = len(results[0].per_sample) if results else 0
    return [{sc.name: r.per_sample[i] for sc, r in zip(scorers, results)} for i in range(n)]


def compare_models(
    baseline_model: Any,
    candidate_model: Any,
    adapter: Adapter,
    task_spec: TaskSpec,
    eval_cfg: EvalConfig,
    db: ExperimentDB | None = None,
    comparison_name: str | None = None,
    threshold: Threshold | None = 0.01,
) -> dict[str, Any]:
    """Evaluate both models on the same samples and compare their metrics.

    Returns ``{"metrics": {name: {baseline, candidate, delta, status, ...}}}`` plus
    ``"comparison_id"`` when a database is given (both evaluations are stored as runs).
    """
    pack = eval_cfg.promptpack if isinstance(eval_cfg.promptpack, PromptPack) else load_promptpack(eval_cfg.promptpack)
    scorer_names = list(task_spec.scorers or [_TASK_SCORERS.get(task_spec.task, task_spec.task)])
    scorers = [get_scorer(n) for n in scorer_names]
    samples = _samples(pack, eval_cfg, eval_cfg.split)
    support_samples = pack.samples(eval_cfg.support_split) if eval_cfg.support_split else None

    results = {}
    for role, model in (("baseline", baseline_model), ("candidate", candidate_model)):
        run, source = model_runner(model, adapter)
        preds = _predict(adapter, run, samples, eval_cfg.batch_size)
        support_preds = _predict(adapter, run, support_samples, eval_cfg.batch_size) if support_samples else []
        reference = results["baseline"]["preds"] if role == "candidate" else None
        scores = score_predictions(scorers, preds, samples, reference, support_samples or (), support_preds)
        metrics: dict[str, float] = {}
        for r in scores:
            metrics.update(r.metrics)
        if task_spec.metrics is not None:
            unknown = [m for m in task_spec.metrics if m not in metrics]
            if unknown:
                get_metric(unknown[0])  # an unregistered name gets "did you mean"
                raise InputError(f"task_spec.metrics: {unknown[0]!r} is not produced by scorers {scorer_names}")
            metrics = {m: metrics[m] for m in task_spec.metrics}
        results[role] = {"preds": preds, "scores": scores, "metrics": metrics, "source": source}

    evidence = Evidence(
        baseline_records=_records(scorers, results["baseline"]["scores"]),
        candidate_records=_records(scorers, results["candidate"]["scores"]),
        aggregate=combined_aggregate(scorers),
        seed=eval_cfg.seed,
    )
    # Baseline-only metrics (agreement with itself) are not compared.
    base_metrics = results["baseline"]["metrics"]
    cand_metrics = {k: v for k, v in results["candidate"]["metrics"].items() if k in base_metrics}
    out = compare_metrics(base_metrics, cand_metrics, threshold, evidence=evidence)
    for k, v in results["candidate"]["metrics"].items():
        if k not in base_metrics:
            out.setdefault("candidate_only", {})[k] = v
    out["promptpack"] = {"name": pack.name, "version": pack.version, "digest": pack.digest,
                         "split": eval_cfg.split, "samples": len(samples)}
    if db is not None:
        ids = {}
        for role in ("baseline", "candidate"):
            r = results[role]
            rid = db.start_run(
                invocation=f"compare_models:{comparison_name or ''}", pipeline=comparison_name or "compare_models",
                device=r["source"], variant=role, model_digest=None, pack_digest=pack.digest,
                config_digest=None, details={"task": task_spec.task, "edgegate": __version__},
            )
            db.add_metrics(rid, [StoredMetric(k, v, get_metric(k).unit, "computed") for k, v in r["metrics"].items()])
            db.finish_run(rid, "completed")
            ids[role] = rid
        out["comparison_id"] = db.add_comparison(
            ids["baseline"], ids["candidate"], out, name=comparison_name, notes=notes_for(out), verdict=verdict_for(out)
        )
        out["baseline_run_id"], out["candidate_run_id"] = ids["baseline"], ids["candidate"]
    return out


def _per_sample_records(db: ExperimentDB, run_id: int) -> dict[str, list[dict[str, Any]]] | None:
    art = first_artifact(db.artifacts(run_id), ArtifactKind.PER_SAMPLE_SCORES)
    if art is None or not Path(art["path"]).is_file():
        return None
    data = json.loads(Path(art["path"]).read_text())
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Rebench:
    """Time both runs' compiled graphs again, interleaved, on their target (``--rebench``)."""

    # None: what the baseline run's pipeline used (run details), else BenchmarkSpec's defaults
    processes: int | None = None
    repeats: int | None = None
    warmup: int | None = None
    work_dir: Path | None = None

    def settings(self, run: Run) -> tuple[int, int, int]:
        from edgegate.config import BenchmarkSpec

        recorded = BenchmarkSpec.model_validate((run.details or {}).get("benchmark") or {})
        return (
            self.processes if self.processes is not None else recorded.processes,
            self.repeats if self.repeats is not None else recorded.repeats,
            self.warmup if self.warmup is not None else recorded.warmup,
        )


def _bench_setup(db: ExperimentDB, run: Run) -> tuple[Target, list[CompiledGraph], dict[str, dict[str, np.ndarray]]]:
    """The target a stored run was benchmarked on, its compiled graphs and its benchmark inputs."""
    from edgegate.artifacts import sha256_file

    arts = db.artifacts(run.id)
    feeds_files = {a["graph"]: a for a in artifacts_of_kind(arts, ArtifactKind.BENCH_INPUTS)}
    compiled_rows = artifacts_of_kind(arts, ArtifactKind.COMPILED)
    if not feeds_files or not compiled_rows:
        raise InputError(f"--rebench: run {run.id} stored no compiled graphs or benchmark inputs "
                         "(runs from before --rebench existed cannot be timed again)")
    for a in [*compiled_rows, *feeds_files.values()]:
        path = Path(a["path"])
        if not path.is_file():
            raise InputError(f"--rebench: run {run.id}: recorded artifact missing on disk: {path}")
        if sha256_file(path) != a["sha256"]:
            raise InputError(f"--rebench: run {run.id}: {path} changed since the run (sha256 differs)")
    compiled = list(_compiled_of_run(arts).values())
    feeds = {}
    for c in compiled:
        if c.graph not in feeds_files:
            raise InputError(f"--rebench: run {run.id} stored no benchmark inputs for graph '{c.graph}'")
        with np.load(feeds_files[c.graph]["path"]) as data:
            feeds[c.graph] = {k: data[k] for k in data.files}
    pipeline_path = (run.details or {}).get("pipeline_path")
    return _target_of_run(run, Path(pipeline_path).parent if pipeline_path else None), compiled, feeds


def _target_of_run(run: Run, base_dir: Path | None) -> Target:
    """The target a stored run ran on: its device's, or the host CPU's for a reference run."""
    from edgegate.config import load_device
    from edgegate.targets import target_for_device

    host = (run.details or {}).get("target") == "host-cpu" or run.device == "cpu"
    return target_for_device(load_device("cpu" if host else run.device, relative_to=base_dir))


def _compiled_of_run(arts: Sequence[Mapping[str, Any]]) -> dict[str, CompiledGraph]:
    """graph -> CompiledGraph from a run's recorded compiled files (the artifact is listed first)."""
    compiled = artifacts_of_kind(arts, ArtifactKind.COMPILED)
    graphs = {}
    for g in dict.fromkeys(a["graph"] for a in compiled):
        files = tuple(Path(a["path"]) for a in compiled if a["graph"] == g)
        graphs[g] = CompiledGraph(g, files[0], files, 0, 0)
    return graphs


def rebench_runs(db: ExperimentDB, baseline: Run, candidate: Run, opts: Rebench) -> dict[str, Any]:
    """Benchmark both runs' compiled graphs again, interleaved process by process on one target
    (targets.base.benchmark_interleaved): what separates a regression from a machine that got
    slower between two runs. Returns fresh latency metrics and paired evidence."""
    import tempfile
    import time

    from edgegate.stats import cascade_latency, summarize_latency
    from edgegate.targets.base import benchmark_interleaved

    tb, cb, fb = _bench_setup(db, baseline)
    tc, cc, fc = _bench_setup(db, candidate)
    if tb.name != tc.name:
        raise InputError(f"--rebench: runs {baseline.id} and {candidate.id} ran on different targets "
                         f"({tb.name} vs {tc.name}); latency is compared on one target")
    if sorted(c.graph for c in cb) != sorted(c.graph for c in cc):
        raise InputError(f"--rebench: runs {baseline.id} and {candidate.id} have different graphs")
    processes, repeats, warmup = opts.settings(baseline)
    work = opts.work_dir or Path(tempfile.mkdtemp(prefix="edgegate-rebench-"))
    t0 = time.perf_counter()
    rb, rc = benchmark_interleaved(tb, (cb, fb), (cc, fc), warmup=warmup, repeats=repeats,
                                   min_seconds=0.0, processes=processes, work_dir=work)
    wall = time.perf_counter() - t0

    def metrics(res: Any) -> dict[str, float]:
        return cascade_latency([summarize_latency(t.samples_ms) for t in res.timings])

    return {
        "metrics": (metrics(rb), metrics(rc)),
        "source": rb.source.value,
        "evidence": {
            "baseline_latency": {t.graph: list(t.samples_ms) for t in rb.timings},
            "candidate_latency": {t.graph: list(t.samples_ms) for t in rc.timings},
            "baseline_latency_process": {t.graph: list(t.process_ids) for t in rb.timings},
            "candidate_latency_process": {t.graph: list(t.process_ids) for t in rc.timings},
            "latency_paired": True,
        },
        "info": {"target": tb.name, "source": rb.source.value, "processes": processes,
                 "repeats": repeats, "warmup": warmup, "wall_s": round(wall, 1)},
    }


def compare_runs(
    db: ExperimentDB,
    baseline_run_id: int,
    candidate_run_id: int,
    *,
    threshold: Threshold | None = None,
    allow_pack_drift: bool = False,
    allow_toolchain_drift: bool = False,
    name: str | None = None,
    store: bool = True,
    rebench: Rebench | None = None,
) -> dict[str, Any]:
    """Compare two stored runs: metrics, latency significance from their samples, paired CIs
    from their per-sample records; stored as a comparison unless `store` is False.

    Latency samples stored by two runs were taken at different times, so a machine that got
    slower in between looks like a regression; `rebench` times both runs' compiled graphs
    again, interleaved on one target, and compares those paired measurements instead.

    Runs whose recorded toolchains differ in a key that moves numbers (QAIRT, QNN SDK, the
    device that ran, onnxruntime-qnn) are refused unless `allow_toolchain_drift`; the result
    then says what differed (``toolchain_drift``, ``notes``)."""
    runs = {}
    for role, rid in (("baseline", baseline_run_id), ("candidate", candidate_run_id)):
        run = db.get_run(rid)
        if run is None:
            raise InputError(f"--{role}-run: no run with id {rid} in {db.url}")
        if run.status in ("running", "error", "aborted"):
            raise InputError(f"--{role}-run: run {rid} ended '{run.status}'; it has no complete metrics to compare")
        runs[role] = run
    b, c = runs["baseline"], runs["candidate"]
    if b.pack_digest != c.pack_digest and not allow_pack_drift:
        raise InputError(
            f"runs {b.id} and {c.id} were scored on different PromptPacks ({b.pack_digest} vs {c.pack_digest}); "
            "a comparison across eval sets misleads: rerun on one pack, or pass --allow-pack-drift"
        )
    toolchains = check_toolchains(b.id, b.details, c.id, c.details, allow_drift=allow_toolchain_drift)
    bm, cm = db.metrics(b.id), db.metrics(c.id)
    base = {k: m.value for k, m in bm.items() if k in cm}
    cand = {k: m.value for k, m in cm.items() if k in bm}
    sources = ({k: m.source for k, m in bm.items()}, {k: m.source for k, m in cm.items()})

    fresh = None
    if rebench is not None:  # latency measured now, side by side, instead of the stored samples
        fresh = rebench_runs(db, b, c, rebench)
        for side, values, src in ((base, fresh["metrics"][0], sources[0]), (cand, fresh["metrics"][1], sources[1])):
            for k, v in values.items():
                if k in base and k in cand:
                    side[k] = v
                    src[k] = fresh["source"]
        evidence_kw: dict[str, Any] = dict(fresh["evidence"])
    else:
        (bs, bp), (cs, cp) = db.latency_with_processes(b.id), db.latency_with_processes(c.id)
        evidence_kw = {"baseline_latency": bs, "candidate_latency": cs,
                       "baseline_latency_process": bp, "candidate_latency_process": cp}
    rb, rc = _per_sample_records(db, b.id), _per_sample_records(db, c.id)
    if rb and rc and b.pack_digest == c.pack_digest:
        names = [n for n in rb if n in rc and len(rb[n]) == len(rc[n])]
        scorers = [get_scorer(n) for n in names]
        if scorers:
            n = len(rb[names[0]])
            evidence_kw.update(
                baseline_records=[{s: rb[s][i] for s in names} for i in range(n)],
                candidate_records=[{s: rc[s][i] for s in names} for i in range(n)],
                aggregate=combined_aggregate(scorers),
            )
    result = compare_metrics(base, cand, threshold, evidence=Evidence(**evidence_kw), sources=sources)
    result.update({
        "baseline_run_id": b.id, "candidate_run_id": c.id,
        "baseline": {"pipeline": b.pipeline, "device": b.device, "variant": b.variant, "pack_digest": b.pack_digest},
        "candidate": {"pipeline": c.pipeline, "device": c.device, "variant": c.variant, "pack_digest": c.pack_digest},
        "pack_drift": b.pack_digest != c.pack_digest,
        **toolchains.to_dict(),
        "notes": toolchains.notes,
        "verdict": verdict_for(result),
    })
    if fresh is not None:
        result["rebench"] = fresh["info"]
    if store:
        drifted = f"toolchain drift: {drift_text(toolchains.drift)}" if toolchains.drift else ""
        result["comparison_id"] = db.add_comparison(
            b.id, c.id, result, name=name, notes="; ".join(filter(None, [drifted, notes_for(result)])),
            verdict=result["verdict"],
        )
    return result


__all__ = [
    "CompiledModel",
    "Rebench",
    "EvalConfig",
    "TaskSpec",
    "compare_models",
    "compare_runs",
    "model_runner",
]


def model_from_run(db: ExperimentDB, run_id: int) -> tuple[Any, Adapter, PipelineSpec]:
    """(model, adapter, pipeline spec) recorded for a stored pipeline run: the FP32 ONNX
    graphs of an fp32 run, or the compiled graphs of an int8 run on its device's target."""
    from edgegate.config import load_pipeline

    run = db.get_run(run_id)
    if run is None:
        raise InputError(f"no run with id {run_id} in {db.url}")
    pipeline_path = (run.details or {}).get("pipeline_path")
    if not pipeline_path or not Path(pipeline_path).is_file():
        raise InputError(f"run {run_id}: its pipeline file is not recorded or gone ({pipeline_path})")
    spec = load_pipeline(pipeline_path)
    adapter = make_adapter(spec)
    arts = db.artifacts(run_id)
    if run.variant == "fp32":
        model = {a["graph"]: Path(a["path"]) for a in artifacts_of_kind(arts, ArtifactKind.FP32_ONNX)}
    else:
        model = CompiledModel(_target_of_run(run, spec.base_dir), _compiled_of_run(arts))
    missing = [str(p) for p in (model.values() if isinstance(model, dict) else [f for c in model.graphs.values() for f in c.files]) if not Path(p).is_file()]
    if missing:
        raise InputError(f"run {run_id}: recorded artifact missing on disk: {missing[0]}")
    return model, adapter, spec
