"""The orchestrator: one pipeline on one device, from FP32 baseline to gated INT8 candidate.

``run_pipeline`` does, in order:

1. Load and check the pipeline, the device, the PromptPack (hashes verified), the adapter
   (host glue), the scorers and the target.
2. Export every graph of the model to FP32 ONNX (content-addressed).
3. Golden: when the pipeline has no golden on this device (or ``rebaseline``), run the
   FP32 baseline (compile, benchmark, infer + score) and store its metrics as golden.
4. Quantize the candidate with AIMET, calibrated on the pack's calibration split through
   the FP32 cascade (cached by input digests).
5. Compile the INT8 graphs for the target (cached).
6. Benchmark: warmup + timed repeats of every graph, in each of `processes` fresh worker processes.
7. Infer + score the eval split through the compiled graphs.
8. Compare with golden, evaluate the gates, write the JSON report.
9. Evidence: sign an in-toto statement of the run (DSSE, Ed25519) when ``evidence`` says so;
   a missing key or a failure here is a note, never an error after the measurements.

Every variant is a row in the database from its start; the row always ends with a final
status (the ``finally`` blocks), whatever happens in between.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgegate import __version__
from edgegate.packs.adapters import GraphRunner, predict_sample
from edgegate.artifacts import ArtifactCache, CacheEntry, digest_json, sha256_file
from edgegate.db import ExperimentDB, StoredMetric
from edgegate.errors import EdgeGateError, InputError, SpecError
from edgegate.report.evidence import EvidenceMode, prepare_signing, utc_timestamp, write_evidence
from edgegate.gates import GateResult, evaluate_gates, verdict
from edgegate.metrics import Measurement, Source, get_metric
from edgegate.run.models import GraphSource, export_fp32_onnx, graph_sources, import_object, load_torch_model, weight_bytes
from edgegate.progress import Progress
from edgegate.packs.promptpack import PromptPack, Sample, load_promptpack
from edgegate.packs.scorers import ScoreResult, get_scorer
from edgegate.config import (
    DeviceSpec,
    PipelineSpec,
    aimet_config_for,
    config_digest,
    load_device,
    load_pipeline,
    load_pipeline_device,
)
from edgegate.stats import LatencySummary, cascade_latency, summarize_latency
from edgegate.targets.base import BenchmarkResult, CompiledGraph, Variant
from edgegate.targets import target_for_device
from edgegate.targets.local import CpuTarget

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- context


@dataclass
class RunContext:
    spec: PipelineSpec
    device: DeviceSpec
    pack: PromptPack
    adapter: Any
    graphs: list[GraphSource]
    target: Any
    baseline_target: Any
    scorers: list[Any]
    aimet_config: str
    config_digest: str
    home: Path  # .edgegate directory: cache, reports, run outputs


def _make_adapter(spec: PipelineSpec) -> Any:
    cls = import_object(spec.model.adapter, what="model.adapter")
    try:
        adapter = cls(**dict(spec.model.adapter_options or {}))
    except (TypeError, ValueError) as exc:
        raise SpecError(
            str(spec.source_path), "model.adapter_options", str(exc), spec.line_of("model", "adapter_options")
        ) from None
    return adapter


def _check_adapter_shapes(spec: PipelineSpec, adapter: Any, graphs: Sequence[GraphSource]) -> None:
    """The graphs' declared inputs must be what the adapter feeds them."""
    expected = getattr(adapter, "expected_inputs", None)
    if expected is None:
        return
    want = expected()
    names = {g.name for g in graphs}
    for role in want:
        if role not in names:
            raise SpecError(
                str(spec.source_path), "model.graphs",
                f"the adapter runs a graph named '{role}', which is not declared (declared: {', '.join(sorted(names))})",
                spec.line_of("model", "graphs"),
            )
    for g in graphs:
        for idx, (name, shape) in enumerate(zip(g.input_names, g.input_shapes)):
            exp = want.get(g.name, {}).get(name)
            if exp is not None and tuple(exp) != tuple(shape):
                raise SpecError(
                    str(spec.source_path), f"model.graphs.{g.name}.inputs[{idx}].shape",
                    f"{list(shape)} does not match what the adapter feeds: {list(exp)} "
                    f"(from adapter_options)",
                    spec.line_of("model", "graphs", g.name, "inputs", idx, "shape"),
                )


def load_context(
    pipeline_path: str | Path,
    *,
    device: str | None = None,
    home: Path | None = None,
) -> RunContext:
    """Step 1: everything a run needs, checked, before anything is computed."""
    spec = load_pipeline(pipeline_path)
    if device is not None:
        dev = load_device(device, relative_to=spec.base_dir)
    else:
        dev = load_pipeline_device(spec)
    pack = load_promptpack(spec.promptpack_path, verify=True)
    splits_used = [
        (spec.evaluation.split, "evaluation.split"),
        (spec.quantization.calibration.split, "quantization.calibration.split"),
        (spec.evaluation.support_split, "evaluation.support_split"),
    ]
    for split, field_name in splits_used:
        if split is not None and split not in pack.splits:
            raise SpecError(
                str(spec.source_path), field_name,
                f"PromptPack '{pack.name}' has no split '{split}' (splits: {', '.join(pack.splits)})",
                spec.line_of(*field_name.split(".")),
            )
    scorers = []
    for i, name in enumerate(spec.evaluation.scorers):
        try:
            scorers.append(get_scorer(name))
        except EdgeGateError as exc:
            raise SpecError(
                str(spec.source_path), f"evaluation.scorers[{i}]", exc.message,
                spec.line_of("evaluation", "scorers", i),
            ) from None
    graphs = graph_sources(spec)
    adapter = _make_adapter(spec)
    _check_adapter_shapes(spec, adapter, graphs)
    target = target_for_device(dev)
    # A target that runs FP32 graphs (CPU, AI Hub) runs the baseline too; the HTP emulator
    # runs quantized graphs, so the FP32 reference then runs on the host CPU.
    baseline_target = target if getattr(target, "runs_fp32", False) else CpuTarget("host-cpu")
    return RunContext(
        spec=spec,
        device=dev,
        pack=pack,
        adapter=adapter,
        graphs=graphs,
        target=target,
        baseline_target=baseline_target,
        scorers=scorers,
        aimet_config=aimet_config_for(spec, dev),
        config_digest=config_digest(spec, dev),
        home=home or Path(os.environ.get("EDGEGATE_HOME", ".edgegate")),
    )


# ----------------------------------------------------------------------------- stages


def export_graphs(ctx: RunContext, cache: ArtifactCache) -> dict[str, Path]:
    """Step 2: FP32 ONNX of every graph, stored under its own sha256."""
    out: dict[str, Path] = {}
    tmp_root = ctx.home / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    for g in ctx.graphs:
        tmp = tmp_root / f"{g.name}-{uuid.uuid4().hex}.onnx"
        try:
            export_fp32_onnx(g, tmp)
            digest = sha256_file(tmp)

            def build(d: Path, src: Path = tmp, name: str = g.name) -> dict[str, Any]:
                shutil.copyfile(src, d / f"{name}.onnx")
                return {"graph": name}

            entry = cache.get_or_build("fp32", {"graph": g.name, "onnx_sha256": digest}, build)
        finally:
            tmp.unlink(missing_ok=True)
        out[g.name] = entry.file(f"{g.name}.onnx")
    return out


def cpu_runner(onnx_paths: Mapping[str, Path], *, counts: dict[str, int] | None = None) -> GraphRunner:
    """Run FP32 ONNX graphs in this process with ONNX Runtime on the CPU."""
    from edgegate.targets.ort_runtime import open_session

    sessions = {g: open_session(str(p), "cpu", {}) for g, p in onnx_paths.items()}

    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if counts is not None:
            counts[graph] = counts.get(graph, 0) + 1
        return sessions[graph].run(None, feeds)

    return run


def target_runner(target: Any, compiled: Mapping[str, CompiledGraph], *, counts: dict[str, int] | None = None) -> GraphRunner:
    sessions = {g: target.open(c) for g, c in compiled.items()}

    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if counts is not None:
            counts[graph] = counts.get(graph, 0) + 1
        return sessions[graph].run(feeds)

    return run


def recording_runner(inner: GraphRunner, record: dict[str, list[tuple[np.ndarray, ...]]]) -> GraphRunner:
    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        record.setdefault(graph, []).append(tuple(np.array(v, copy=True) for v in feeds.values()))
        return inner(graph, feeds)

    return run


def collect_graph_inputs(
    adapter: Any, runner: GraphRunner, samples: Sequence[Sample], progress: Progress, what: str
) -> dict[str, list[tuple[np.ndarray, ...]]]:
    """Run the FP32 cascade over samples and keep every batch each graph was fed."""
    record: dict[str, list[tuple[np.ndarray, ...]]] = {}
    rec = recording_runner(runner, record)
    for s in progress.iterate(samples, what):
        predict_sample(adapter, s, rec)
    return record


def quantize_settings(ctx: RunContext) -> Any:
    """The AIMET settings a pipeline asks for, with the config chosen for its device."""
    from edgegate.run.quantize import QuantizeSettings

    q = ctx.spec.quantization
    return QuantizeSettings(
        config=ctx.aimet_config,
        scheme=q.scheme,
        param_bw=q.param_bw,
        output_bw=q.output_bw,
        bn_fold=q.bn_fold,
        cle=q.cle,
        adaround_iterations=q.adaround.iterations if q.adaround else None,
        seed=q.seed,
    )


def quantize_graphs(
    ctx: RunContext,
    fp32: Mapping[str, Path],
    calibration: Mapping[str, list[tuple[np.ndarray, ...]]],
    cache: ArtifactCache,
    progress: Progress,
) -> dict[str, CacheEntry]:
    """Step 4: AIMET QuantSim per graph, cached by (graph digests, settings, data, AIMET)."""
    from edgegate.run.quantize import QUANTIZE_THREADS, aimet_version, quantize_graph

    settings = quantize_settings(ctx)
    config_id = ctx.aimet_config
    if Path(config_id).is_file():
        config_id = "sha256:" + sha256_file(Path(config_id))
    out: dict[str, CacheEntry] = {}
    for g in ctx.graphs:
        batches = calibration.get(g.name, [])
        if not batches:
            raise InputError(
                f"{ctx.spec.source_path}: quantization.calibration: the calibration samples never "
                f"reached graph '{g.name}' (the cascade stopped earlier); use more or other samples"
            )
        key = {
            "graph": g.name,
            "fp32": {n: sha256_file(p) for n, p in fp32.items()},  # calibration of later graphs runs earlier ones
            "settings": {**settings.__dict__, "config": config_id},
            "calibration": digest_json([[hashlib_array(a) for a in b] for b in batches]),
            "aimet": aimet_version(),
            "edgegate": __version__,
            "threads": QUANTIZE_THREADS,
        }

        def build(d: Path, g: GraphSource = g, batches=batches) -> dict[str, Any]:
            model = load_torch_model(g)
            res = quantize_graph(model, g.input_names, g.output_names, batches, settings, d, g.name)
            return {
                "qdq_onnx": res.qdq_onnx.name,
                "encodings": res.encodings.name,
                "encodings_onnx": res.encodings_onnx.name,
                "calibration_batches": res.num_calibration_batches,
            }

        with progress.stage(f"quantize {g.name} (AIMET {ctx.aimet_config}, {len(batches)} calibration batches)"):
            out[g.name] = cache.get_or_build("quantized", key, build)
    return out


def hashlib_array(a: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def compile_graphs(
    target: Any, onnx_paths: Mapping[str, Path], cache: ArtifactCache, variant: Variant
) -> dict[str, CompiledGraph]:
    """Step 5: compile each graph on the target; cached by (graph digest, target, runtime)."""
    desc = target.describe()
    target_id = {k: desc.get(k) for k in ("kind", "runtime", "htp_arch", "soc_model", "performance_mode", "versions")}
    if desc.get("compile_key") is not None:  # what else shapes a remote target's output (device, options)
        target_id["compile_key"] = desc["compile_key"]

    def one(graph: str, path: Path) -> CompiledGraph:
        key = {"graph": graph, "onnx": sha256_file(path), "target": target_id, "variant": variant.value,
               "fallback": getattr(target, "allow_cpu_fallback", False)}

        def build(d: Path, graph: str = graph, path: Path = path) -> dict[str, Any]:
            c = target.compile(graph, path, d)
            return {
                "artifact": c.artifact.name,
                "files": [f.name for f in c.files],
                "npu_nodes": c.npu_nodes,
                "cpu_nodes": c.cpu_nodes,
                "cpu_ops": list(c.cpu_ops),
                "compile_time_ms": c.compile_time_ms,
                "details": c.details,
            }

        entry = cache.get_or_build(f"compiled-{desc['kind']}", key, build)
        m = entry.meta
        return CompiledGraph(
            graph,
            entry.file(m["artifact"]),
            tuple(entry.file(f) for f in m["files"]),
            int(m["npu_nodes"]),
            int(m["cpu_nodes"]),
            tuple(m["cpu_ops"]),
            float(m["compile_time_ms"]),
            {**m.get("details", {}), "cached": entry.hit, "cache_key": entry.key},
        )

    # Remote targets (AI Hub) compile every graph at once; host targets one after another.
    workers = min(len(onnx_paths), int(getattr(target, "max_parallel_compiles", 1))) or 1
    if workers == 1:
        return {g: one(g, p) for g, p in onnx_paths.items()}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="compile") as pool:
        futures = {g: pool.submit(one, g, p) for g, p in onnx_paths.items()}
        try:
            return {g: f.result() for g, f in futures.items()}
        except BaseException:
            cancel = getattr(target, "cancel", None)  # Ctrl-C, SIGTERM or a failed graph: stop waiting
            if cancel is not None:
                cancel()
            raise


def evaluate(
    adapter: Any,
    runner: GraphRunner,
    samples: Sequence[Sample],
    scorers: Sequence[Any],
    reference: Sequence[Mapping[str, Any]] | None,
    progress: Progress,
    what: str,
    support: Sequence[Sample] = (),
) -> tuple[list[dict[str, np.ndarray]], list[ScoreResult]]:
    """Step 7: predictions for every sample (and the support split), then every scorer."""
    predict_all = getattr(runner, "predict_all", None)  # batching runner (remote targets)
    if predict_all is not None:
        preds = predict_all(adapter, samples, progress, what)
        support_preds = predict_all(adapter, support, progress, what + " (support)") if support else []
    else:
        preds = [predict_sample(adapter, s, runner) for s in progress.iterate(samples, what)]
        support_preds = [predict_sample(adapter, s, runner) for s in progress.iterate(support, what + " (support)")]
    if support:
        results = [sc.score(preds, samples, reference, support=(support_preds, list(support))) for sc in scorers]
    else:
        results = [sc.score(preds, samples, reference) for sc in scorers]
    return preds, results


# ----------------------------------------------------------------------------- results


@dataclass
class VariantResult:
    variant: Variant
    run_id: int
    target: dict[str, Any]
    metrics: dict[str, Measurement]
    latency: dict[str, LatencySummary] = field(default_factory=dict)
    compiled: dict[str, CompiledGraph] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    memory_method: str = ""
    calls_per_image: dict[str, float] = field(default_factory=dict)
    from_golden: bool = False


@dataclass
class PipelineResult:
    pipeline: str
    device: dict[str, Any]
    pack: dict[str, Any]
    config_digest: str
    baseline: VariantResult
    candidate: VariantResult
    golden_run_id: int
    gates: list[GateResult]
    passed: bool
    report_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    # the resolved {"pipeline", "device"} config that config_digest is the digest of
    config: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None  # UTC ISO 8601
    finished_at: str | None = None
    evidence_path: Path | None = None
    evidence_status: str = ""  # the bundle, or why there is none
    reproducibility: dict[str, Any] | None = None  # edgegate.run.reproduce.ReproResult.to_dict()
    adversarial: dict[str, Any] | None = None  # edgegate.run.adversarial.AdversarialResult.summary()


def _metric(name: str, value: float, source: Source) -> tuple[str, Measurement]:
    return name, Measurement(float(value), source, get_metric(name).unit)


def variant_metrics(
    bench: BenchmarkResult,
    compiled: Mapping[str, CompiledGraph],
    scores: Sequence[ScoreResult],
    size_bytes: int,
) -> tuple[dict[str, Measurement], dict[str, LatencySummary]]:
    """Summaries computed once, here, the same way for every target."""
    summaries = {t.graph: summarize_latency(t.samples_ms) for t in bench.timings}
    src = bench.source
    m: dict[str, Measurement] = dict(
        [
            # one pass of every graph: the cascade's NPU time for one image and one batch each
            *(_metric(k, v, src) for k, v in cascade_latency(list(summaries.values())).items()),
            _metric("load_time_ms", sum(t.load_time_ms for t in bench.timings), src),
            _metric("compile_time_ms", sum(c.compile_time_ms for c in compiled.values()), src),
        ]
    )
    if bench.peak_memory_mb is not None:
        m.update([_metric("peak_memory_mb", bench.peak_memory_mb, src)])
    if bench.load_peak_memory_mb is not None:
        m.update([_metric("load_peak_memory_mb", bench.load_peak_memory_mb, src)])
    npu = sum(c.npu_nodes for c in compiled.values())
    cpu = sum(c.cpu_nodes for c in compiled.values())
    compiled_bytes = sum(f.stat().st_size for c in compiled.values() for f in c.files)
    m.update(
        [
            _metric("model_size_kb", size_bytes / 1024, Source.COMPUTED),
            _metric("model_size_mb", size_bytes / 2**20, Source.COMPUTED),
            _metric("compiled_size_kb", compiled_bytes / 1024, Source.COMPUTED),
            _metric("compiled_size_mb", compiled_bytes / 2**20, Source.COMPUTED),
            _metric("npu_nodes", npu, Source.COMPUTED),
            _metric("cpu_nodes", cpu, Source.COMPUTED),
            _metric("npu_fraction", npu / (npu + cpu) if npu + cpu else 0.0, Source.COMPUTED),
        ]
    )
    for sr in scores:
        for name, value in sr.metrics.items():
            m.update([_metric(name, value, Source.COMPUTED)])
    return m, summaries


def with_placement(compiled: Mapping[str, CompiledGraph], bench: BenchmarkResult) -> dict[str, CompiledGraph]:
    """Layer placement measured while benchmarking (AI Hub's per-layer compute units, in
    ``bench.details["placement"]``) replaces the compile-time counts: GPU and CPU layers
    both count as off the NPU (``cpu_nodes``)."""
    import dataclasses

    placement = bench.details.get("placement") or {}
    out = dict(compiled)
    for g, p in placement.items():
        if g in out:
            out[g] = dataclasses.replace(
                out[g], npu_nodes=int(p.get("NPU", 0)), cpu_nodes=int(p.get("CPU", 0)) + int(p.get("GPU", 0)),
                details={**out[g].details, "placement": dict(p)},
            )
    return out


def _store_variant(db: ExperimentDB, run_id: int, metrics: Mapping[str, Measurement], bench: BenchmarkResult) -> None:
    db.add_metrics(run_id, [StoredMetric(k, v.value, v.unit, v.source.value) for k, v in metrics.items()])
    for t in bench.timings:
        db.add_latency_samples(run_id, t.graph, t.samples_ms, bench.source.value, t.process_ids or None)


def _predictions_json(samples: Sequence[Sample], preds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Predictions with each array's shape and dtype, so they load back exactly."""
    out = []
    for s, p in zip(samples, preds):
        arrays = {}
        for k, v in p.items():
            a = np.asarray(v)
            arrays[k] = {"shape": list(a.shape), "dtype": a.dtype.str, "data": a.ravel().tolist()}
        out.append({"id": s.id, "sha256": s.sha256, "arrays": arrays})
    return out


def _load_predictions(path: Path, samples: Sequence[Sample]) -> list[dict[str, np.ndarray]] | None:
    """The stored predictions for exactly these samples, or None if they do not match."""
    if not path.is_file():
        return None
    by_id = {d["id"]: d for d in json.loads(path.read_text())}
    out = []
    for s in samples:
        d = by_id.get(s.id)
        if d is None or d.get("sha256") != s.sha256:
            return None
        out.append(
            {k: np.asarray(a["data"], dtype=np.dtype(a["dtype"])).reshape(a["shape"]) for k, a in d["arrays"].items()}
        )
    return out


# ----------------------------------------------------------------------------- run


@dataclass
class RunOptions:
    device: str | None = None
    db_url: str | None = None
    rebaseline: bool = False
    home: Path | None = None
    report_path: Path | None = None
    # Gates on quality metrics hold on the conservative end of the candidate's 95% bootstrap CI.
    strict: bool = False
    progress: Progress = field(default_factory=lambda: Progress(quiet=True))
    evidence: EvidenceMode | str = EvidenceMode.ON_PASS  # on-pass | always | never
    signing_key: Path | None = None  # else $EDGEGATE_SIGNING_KEY, else ./edgegate.toml
    evidence_dir: Path | None = None  # default ./evidence
    # also: quantization.verify_reproducible in the pipeline file
    verify_reproducible: bool = False


def _run_variant(
    ctx: RunContext,
    db: ExperimentDB,
    cache: ArtifactCache,
    *,
    variant: Variant,
    invocation: str,
    target: Any,
    onnx_paths: Mapping[str, Path],
    size_bytes: int,
    eval_samples: Sequence[Sample],
    bench_inputs: Mapping[str, Mapping[str, np.ndarray]],
    reference: Sequence[Mapping[str, Any]] | None,
    golden_run_id: int | None,
    extra_artifacts: Sequence[tuple[str, str | None, Path]],
    progress: Progress,
    model_digest: str,
) -> tuple[VariantResult, list[dict[str, np.ndarray]]]:
    run_id = db.start_run(
        invocation=invocation,
        pipeline=ctx.spec.name,
        device=ctx.device.name,
        variant=variant.value,
        model_digest=model_digest,
        pack_digest=ctx.pack.digest,
        config_digest=ctx.config_digest,
        golden_run_id=golden_run_id,
        details={
            "target": target.describe()["name"],
            "timing_source": target.source.value,
            "benchmark": ctx.spec.benchmark.model_dump(),  # what `compare --rebench` repeats
            "edgegate": __version__,
            "pipeline_path": str(Path(ctx.spec.source_path).resolve()),
            "scorers": [sc.name for sc in ctx.scorers],
        },
    )
    status, error = "error", None
    attach = getattr(target, "attach_run", None)
    if attach is not None:  # remote targets record their jobs against this run (AI Hub's ledger)
        attach(db, run_id)
    try:
        with progress.stage(f"{variant.value}: compile for {target.name}"):
            compiled = compile_graphs(target, onnx_paths, cache, variant)
        b = ctx.spec.benchmark
        with progress.stage(f"{variant.value}: benchmark ({b.warmup} warmup + {b.repeats} repeats per graph, "
                            f"{b.processes} process{'es' if b.processes > 1 else ''})"):
            bench = target.benchmark(
                list(compiled.values()), bench_inputs, warmup=b.warmup, repeats=b.repeats,
                min_seconds=b.min_seconds, work_dir=ctx.home / "runs" / str(run_id), processes=b.processes,
            )
        compiled = with_placement(compiled, bench)
        counts: dict[str, int] = {}
        runner = target_runner(target, compiled, counts=counts)
        if hasattr(target, "run_batch"):  # one job per graph per round, not one per call
            from edgegate.run.batching import LockstepRunner

            runner = LockstepRunner(lambda g, fl: target.run_batch(compiled[g], fl), counts=counts)
        support_split = ctx.spec.evaluation.support_split
        preds, scores = evaluate(
            ctx.adapter, runner, eval_samples, ctx.scorers, reference, progress,
            f"{variant.value}: infer + score on {target.name}",
            support=ctx.pack.samples(support_split) if support_split else (),
        )
        metrics, summaries = variant_metrics(bench, compiled, scores, size_bytes)
        _store_variant(db, run_id, metrics, bench)
        run_dir = ctx.home / "runs" / str(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        # what the benchmark fed each graph: `edgegate compare --rebench` times the run again on it
        feed_files = []
        for c in compiled.values():
            path = run_dir / f"bench_inputs_{c.graph}.npz"
            np.savez(path, **{k: np.asarray(v) for k, v in bench_inputs[c.graph].items()})
            feed_files.append(("bench_inputs", c.graph, path))
        pred_path = run_dir / "predictions.json"
        pred_path.write_text(json.dumps(_predictions_json(eval_samples, preds)))
        per_sample = run_dir / "per_sample.json"
        # scorer name -> per-sample records: what paired statistics resample later
        per_sample.write_text(json.dumps({sc.name: sr.per_sample for sc, sr in zip(ctx.scorers, scores)}, default=str))
        artifacts = []
        for kind, graph, path in [
            *extra_artifacts,
            *[("compiled", c.graph, f) for c in compiled.values() for f in c.files],
            *feed_files,
            ("predictions", None, pred_path),
            ("per_sample_scores", None, per_sample),
        ]:
            digest = sha256_file(path)
            db.add_artifact(run_id, kind, graph, path, digest)
            artifacts.append({"kind": kind, "graph": graph, "path": str(path), "sha256": digest})
        status = "completed"
        result = VariantResult(
            variant, run_id, target.describe(), metrics, summaries, compiled, artifacts, bench.memory_method,
            {g: n / max(1, len(eval_samples)) for g, n in counts.items()},
        )
        return result, preds
    except BaseException as exc:
        error = exc.message if isinstance(exc, EdgeGateError) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        # Board targets remove their scratch files on the board and disconnect here.
        close = getattr(target, "close", None)
        if close is not None:
            close()
        db.finish_run(run_id, status, error=error)


def _golden_variant(db: ExperimentDB, golden_id: int) -> VariantResult:
    run = db.get_run(golden_id)
    stored = db.metrics(golden_id)
    metrics = {k: Measurement(v.value, Source(v.source), v.unit) for k, v in stored.items()}
    samples = db.latency_samples(golden_id)
    summaries = {g: summarize_latency(s) for g, s in samples.items() if s}
    return VariantResult(
        Variant(run.variant if run else "fp32"), golden_id, {"name": "golden"}, metrics, summaries,
        artifacts=db.artifacts(golden_id), from_golden=True,
    )


def run_pipeline(pipeline_path: str | Path, options: RunOptions | None = None) -> PipelineResult:
    """Run a pipeline end to end (steps in the module docstring) and return the result."""
    from edgegate.report.run_report import build_report, write_json_report

    opts = options or RunOptions()
    progress = opts.progress
    started_at = utc_timestamp()
    # 1. load and check everything (the signing key too: say now, not after the run, if none)
    signing = prepare_signing(opts.evidence, opts.signing_key)
    ctx = load_context(pipeline_path, device=opts.device, home=opts.home)
    if signing.problem:  # after the inputs check out, so a bad input stays a single error line
        progress.info(signing.problem)
    db = ExperimentDB(opts.db_url)
    cache = ArtifactCache(ctx.home / "artifacts")
    invocation = uuid.uuid4().hex
    spec = ctx.spec
    progress.info(
        f"pipeline {spec.name} on {ctx.device.name} ({ctx.device.kind}); PromptPack "
        f"{ctx.pack.name} {ctx.pack.version} {ctx.pack.digest[:19]}"
    )

    # 2. FP32 ONNX of every graph
    with progress.stage("export FP32 graphs"):
        fp32 = export_graphs(ctx, cache)
    model_digest = "sha256:" + digest_json({g: sha256_file(p) for g, p in fp32.items()})
    eval_samples = ctx.pack.samples(spec.evaluation.split, spec.evaluation.limit)
    calib_samples = ctx.pack.samples(spec.quantization.calibration.split, spec.quantization.calibration.samples)
    fp32_run = cpu_runner(fp32)
    # Benchmark inputs: what each graph is fed on the first eval image that reaches it.
    bench_feeds = _benchmark_feeds(ctx, fp32_run, eval_samples)
    fp32_size = sum(weight_bytes(p, None) for p in fp32.values())

    # 3. golden: the FP32 baseline, run once per pipeline x device (or on --rebaseline)
    golden_id = db.golden(spec.name, ctx.device.name)
    notes: list[str] = []
    baseline_preds: list[dict[str, np.ndarray]] | None = None
    if golden_id is not None and not opts.rebaseline:
        golden_run = db.get_run(golden_id)
        if golden_run is not None and golden_run.pack_digest != ctx.pack.digest:
            raise InputError(
                f"golden run {golden_id} of {spec.name} on {ctx.device.name} was scored on PromptPack "
                f"{golden_run.pack_digest}, this run uses {ctx.pack.digest}: comparing them would "
                "mislead; rerun with --rebaseline to make a new golden"
            )
        baseline = _golden_variant(db, golden_id)
        pred_art = next((a for a in baseline.artifacts if a["kind"] == "predictions"), None)
        if pred_art is not None:
            baseline_preds = _load_predictions(Path(pred_art["path"]), eval_samples)
        if golden_run is not None and golden_run.model_digest != model_digest:
            notes.append(
                f"the FP32 model differs from golden run {golden_id}'s ({golden_run.model_digest[:19]}); "
                "use --rebaseline if the baseline itself changed on purpose"
            )
    else:
        baseline, baseline_preds = _run_variant(
            ctx, db, cache, variant=Variant.FP32, invocation=invocation, target=ctx.baseline_target,
            onnx_paths=fp32, size_bytes=fp32_size, eval_samples=eval_samples, bench_inputs=bench_feeds,
            reference=None, golden_run_id=None,
            extra_artifacts=[("fp32_onnx", g, p) for g, p in fp32.items()], progress=progress,
            model_digest=model_digest,
        )
        db.set_golden(spec.name, ctx.device.name, baseline.run_id)
        golden_id = baseline.run_id
        progress.info(f"stored run {golden_id} as golden for {spec.name} on {ctx.device.name}")
    if baseline_preds is None:
        # The golden's predictions are gone from disk: recompute the FP32 reference here.
        with progress.stage("recompute FP32 reference predictions"):
            baseline_preds, _ = evaluate(ctx.adapter, fp32_run, eval_samples, [], None, progress, "fp32 reference")
        notes.append("FP32 reference predictions were recomputed on the host CPU (golden's file missing)")

    # 4. quantize with AIMET, calibrated through the FP32 cascade
    with progress.stage(f"collect calibration inputs ({len(calib_samples)} samples)"):
        calibration = collect_graph_inputs(ctx.adapter, fp32_run, calib_samples, progress, "calibration")
    quantized = quantize_graphs(ctx, fp32, calibration, cache, progress)
    qdq = {g: e.file(e.meta["qdq_onnx"]) for g, e in quantized.items()}
    int8_size = sum(weight_bytes(p_fp32, ctx.spec.quantization.param_bw) for p_fp32 in fp32.values())
    extra = []
    for g, e in quantized.items():
        extra += [("fp32_onnx", g, fp32[g]), ("qdq_onnx", g, e.file(e.meta["qdq_onnx"])),
                  ("encodings", g, e.file(e.meta["encodings"])), ("encodings_onnx", g, e.file(e.meta["encodings_onnx"]))]

    # 5-7. compile, benchmark, infer + score the INT8 candidate
    candidate, _ = _run_variant(
        ctx, db, cache, variant=Variant.INT8, invocation=invocation, target=ctx.target, onnx_paths=qdq,
        size_bytes=int8_size, eval_samples=eval_samples, bench_inputs=bench_feeds, reference=baseline_preds,
        golden_run_id=golden_id, extra_artifacts=extra, progress=progress, model_digest=model_digest,
    )

    # 7b. optionally: quantize + compile twice more in fresh processes, compare bytes
    repro = None
    if opts.verify_reproducible or spec.quantization.verify_reproducible:
        repro = _check_reproducible(ctx, db, pipeline_path, opts, calibration, quantized, qdq, candidate, progress)

    # 7c. optionally: differential search for inputs FP32 and INT8 disagree on
    adversarial = None
    if spec.adversarial is not None:
        adversarial = _adversarial(ctx, db, fp32, qdq, candidate, eval_samples, progress)

    # 8. compare with golden, gates, report
    gate_results = evaluate_gates(spec.parsed_gates(), candidate.metrics, baseline.metrics)
    if opts.strict:
        gate_results = _strict_gates(ctx, spec.parsed_gates(), candidate, baseline, gate_results)
    passed = verdict(gate_results)
    result = PipelineResult(
        pipeline=spec.name,
        device={**ctx.target.describe(), "config": ctx.device.model_dump(mode="json")},
        pack={"name": ctx.pack.name, "version": ctx.pack.version, "digest": ctx.pack.digest,
              "split": spec.evaluation.split, "samples": len(eval_samples),
              "calibration_samples": len(calib_samples)},
        config_digest=ctx.config_digest,
        baseline=baseline,
        candidate=candidate,
        golden_run_id=golden_id,
        gates=gate_results,
        passed=passed,
        notes=notes,
        config={"pipeline": spec.model_dump(mode="json"), "device": ctx.device.model_dump(mode="json")},
        started_at=started_at,
        finished_at=utc_timestamp(),
        reproducibility=repro,
        adversarial=adversarial,
    )
    report = build_report(result)
    report_path = opts.report_path or (ctx.home / "reports" / f"{spec.name}-{candidate.run_id}.json")
    write_json_report(report, report_path)
    result.report_path = report_path
    db.finish_run(candidate.run_id, "passed" if passed else "failed", report_path=str(report_path))

    # 9. evidence bundle
    evidence = write_evidence(result, report, signing, opts.evidence_dir)
    result.evidence_path, result.evidence_status = evidence.path, evidence.message
    if evidence.note:
        result.notes.append(evidence.note)
    if evidence.path is not None:
        try:
            db.add_evidence(candidate.run_id, evidence.path, evidence.sha256 or "", evidence.key_id or "")
        except EdgeGateError as exc:
            result.notes.append(f"evidence bundle {evidence.path} not recorded in the database: {exc.message}")
        progress.info(f"evidence bundle: {evidence.path}")
    return result


def _check_reproducible(
    ctx: RunContext, db: ExperimentDB, pipeline_path: str | Path, opts: RunOptions,
    calibration: Mapping[str, list[tuple[np.ndarray, ...]]], quantized: Mapping[str, CacheEntry],
    qdq: Mapping[str, Path], candidate: VariantResult, progress: Progress,
) -> dict[str, Any]:
    """Metric `reproducible` (1/0) on the candidate, from two fresh quantize + compile runs."""
    from edgegate.run.reproduce import verify_reproducible

    primary = {
        g: {"encodings": str(e.file(e.meta["encodings"])), "qdq_onnx": str(qdq[g]),
            "compiled": [str(f) for f in candidate.compiled[g].files]}
        for g, e in quantized.items()
    }
    with progress.stage("verify reproducibility: quantize + compile twice in fresh processes"):
        res = verify_reproducible(
            pipeline_path, opts.device, calibration, primary,
            work_dir=ctx.home / "runs" / str(candidate.run_id) / "reproduce",
        )
    m = Measurement(1.0 if res.reproducible else 0.0, Source.COMPUTED, get_metric("reproducible").unit)
    candidate.metrics["reproducible"] = m
    db.add_metrics(candidate.run_id, [StoredMetric("reproducible", m.value, m.unit, m.source.value)])
    return res.to_dict()


def _adversarial(
    ctx: RunContext, db: ExperimentDB, fp32: Mapping[str, Path], qdq: Mapping[str, Path],
    candidate: VariantResult, eval_samples: Sequence[Sample], progress: Progress,
) -> dict[str, Any]:
    """Metrics adversarial_* / *_robustness on the candidate, and a PromptPack of findings."""
    from edgegate.run.adversarial import AdversarialSettings, search, write_failure_pack

    adv = ctx.spec.adversarial
    if not (hasattr(ctx.adapter, "decision_margin") and hasattr(ctx.adapter, "disagree")):
        raise InputError(
            f"{ctx.spec.source_path}: adversarial: adapter {ctx.spec.model.adapter} has no "
            "decision_margin/disagree, so it cannot be searched; remove the section"
        )
    settings = AdversarialSettings(
        seeds=adv.seeds, epsilon=adv.epsilon, steps=adv.steps, step_size=adv.step_size,
        transforms=tuple(adv.transforms), time_budget_s=adv.time_budget_s, seed=adv.seed,
    )
    modules = {g.name: load_torch_model(g) for g in ctx.graphs}
    int8_run = target_runner(ctx.target, candidate.compiled) if adv.candidate == "target" else cpu_runner(qdq)
    where = ctx.target.name if adv.candidate == "target" else "QDQ graphs on ONNX Runtime CPU"
    with progress.stage(f"adversarial search: {min(adv.seeds, len(eval_samples))} seeds, INT8 on {where}"):
        res = search(ctx.adapter, eval_samples, modules, cpu_runner(fp32), int8_run, settings)
    new = {
        "adversarial_disagreement_rate": res.disagreement_rate,
        "adversarial_coverage": res.coverage,
        "fp32_robustness": res.fp32_robustness,
        "int8_robustness": res.int8_robustness,
    }
    for name, value in new.items():
        candidate.metrics[name] = Measurement(float(value), Source.COMPUTED, get_metric(name).unit)
    db.add_metrics(candidate.run_id, [StoredMetric(k, float(v), get_metric(k).unit, "computed") for k, v in new.items()])
    out_dir = ctx.home / "runs" / str(candidate.run_id) / "adversarial"
    pack = write_failure_pack(res, out_dir, name=f"{ctx.spec.name}-adversarial-{candidate.run_id}", source_pack=ctx.pack.digest)
    if pack is not None:
        manifest = pack / "manifest.yaml"
        db.add_artifact(candidate.run_id, "adversarial_pack", None, manifest, sha256_file(manifest))
    summary = res.summary()
    summary.update({"int8_runtime": where, "findings_pack": str(pack) if pack else None,
                    "findings": [{"seed": f.seed_id, "kind": f.kind, "detail": f.detail, "linf": f.linf}
                                 for f in res.findings]})
    return summary


def candidate_cis(ctx: RunContext, run_id: int, confidence: float = 0.95) -> dict[str, tuple[float, float]]:
    """Bootstrap CIs of the candidate's quality metrics from its per-sample records."""
    from edgegate.regression import combined_aggregate
    from edgegate.stats import paired_bootstrap

    path = ctx.home / "runs" / str(run_id) / "per_sample.json"
    records_by_scorer = json.loads(path.read_text())
    names = [sc.name for sc in ctx.scorers if sc.name in records_by_scorer]
    aggregate = combined_aggregate([sc for sc in ctx.scorers if sc.name in names])
    if aggregate is None or not names:
        return {}
    n = len(records_by_scorer[names[0]])
    records = [{s: records_by_scorer[s][i] for s in names} for i in range(n)]
    return paired_bootstrap(n, lambda idx: aggregate([records[i] for i in idx]), confidence=confidence)


def _strict_gates(
    ctx: RunContext, gates: Sequence[Any], candidate: VariantResult, baseline: VariantResult,
    plain: Sequence[GateResult],
) -> list[GateResult]:
    """Re-evaluate gates on quality metrics at the conservative end of the candidate's CI."""
    import dataclasses

    from edgegate.metrics import Direction

    cis = candidate_cis(ctx, candidate.run_id)
    conservative = dict(candidate.metrics)
    for name, (lo, hi) in cis.items():
        if name in conservative:
            m = conservative[name]
            bound = lo if get_metric(name).direction is Direction.HIGHER else hi
            conservative[name] = Measurement(bound, m.source, m.unit)
    out = []
    for gate, result in zip(gates, evaluate_gates(gates, conservative, baseline.metrics)):
        if gate.metric in cis:
            side = "lower" if get_metric(gate.metric).direction is Direction.HIGHER else "upper"
            result = dataclasses.replace(result, reason=f"strict, {side} 95% CI bound: {result.reason}")
        out.append(result)
    return out


def _benchmark_feeds(
    ctx: RunContext, runner: GraphRunner, samples: Sequence[Sample]
) -> dict[str, dict[str, np.ndarray]]:
    """A real input for every graph: the first batch each graph sees on the eval split."""
    feeds: dict[str, dict[str, np.ndarray]] = {}
    record: dict[str, list[tuple[np.ndarray, ...]]] = {}
    rec = recording_runner(runner, record)
    names = {g.name: g.input_names for g in ctx.graphs}
    for s in samples:
        predict_sample(ctx.adapter, s, rec)
        if all(record.get(g) for g in names):
            break
    for g, inputs in names.items():
        if not record.get(g):
            # No eval image reached this graph: time it on zeros of its declared shape.
            src = next(x for x in ctx.graphs if x.name == g)
            feeds[g] = {n: np.zeros(s, np.float32) for n, s in zip(src.input_names, src.input_shapes)}
        else:
            feeds[g] = dict(zip(inputs, record[g][0]))
    return feeds
