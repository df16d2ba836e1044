"""The stages of a run, one function each: inputs in, typed result out.

Export (FP32 ONNX), quantize (AIMET), compile (the target), evaluate (predict + score) and
the variant's metrics. Stages write only into the content-addressed artifact cache; the
database rows and a run's own files are the orchestrator's (``edgegate.run.pipeline``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgegate import __version__
from edgegate.artifacts import ArtifactCache, digest_json, sha256_file
from edgegate.errors import InputError
from edgegate.metrics import Measurement, Source, get_metric
from edgegate.packs.adapters import Adapter, GraphRunner, Prediction, predict_sample
from edgegate.packs.scorers import Scorer, ScoreResult, Support
from edgegate.progress import Progress
from edgegate.results import ArtifactKind
from edgegate.run.context import RunContext
from edgegate.run.models import GraphSource, export_fp32_onnx, load_torch_model
from edgegate.run.reuse import target_identity
from edgegate.run.runners import BatchPredictor, GraphInputs
from edgegate.stats import LatencySummary, cascade_latency, summarize_latency
from edgegate.targets.base import BenchmarkResult, CompiledGraph, Target, Variant

if TYPE_CHECKING:
    from edgegate.packs.sample import Sample
    from edgegate.run.qnn_config import QnnEpConfig
    from edgegate.run.quantize import QuantizeSettings


# ----------------------------------------------------------------------------- export


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


# ----------------------------------------------------------------------------- quantize


@dataclass(frozen=True)
class QuantizedFiles:
    """One graph's AIMET output, as stored in the artifact cache."""

    qdq_onnx: Path
    encodings: Path
    encodings_onnx: Path


def quantize_settings(ctx: RunContext) -> QuantizeSettings:
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


def array_digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (calibration data in a cache key)."""
    h = hashlib.sha256()
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def batches_digest(batches: Sequence[Sequence[np.ndarray]]) -> str:
    """One digest of a graph's calibration batches (a cache key part)."""
    return digest_json([[array_digest(a) for a in b] for b in batches])


def aimet_config_id(ctx: RunContext) -> str:
    """The device's AIMET config as a key part: its alias, or the sha256 of a config file."""
    config = ctx.aimet_config
    return "sha256:" + sha256_file(Path(config)) if Path(config).is_file() else config


def quantize_graphs(
    ctx: RunContext,
    fp32: Mapping[str, Path],
    calibration: GraphInputs,
    cache: ArtifactCache,
    progress: Progress,
) -> dict[str, QuantizedFiles]:
    """Step 4: AIMET QuantSim per graph (aimet-torch for torch graphs, aimet-onnx for ONNX
    sources), with AIMET's config adjusted where the graph has what ONNX Runtime's QNN EP
    does not compile (``run.qnn_config``); cached by (graph digests, settings, data, AIMET)."""
    from edgegate.run.qnn_config import QDQ_EXPORT, graph_op_chains, qnn_ep_config, read_aimet_config
    from edgegate.run.quantize import QUANTIZE_THREADS, aimet_version, quantize_graph
    from edgegate.run.quantize_onnx import aimet_onnx_version, quantize_onnx_graph

    settings = quantize_settings(ctx)
    config_id = aimet_config_id(ctx)
    aimet_config = read_aimet_config(settings.config)
    out: dict[str, QuantizedFiles] = {}
    for g in ctx.graphs:
        batches = calibration.get(g.name, [])
        if not batches:
            raise InputError(
                f"{ctx.spec.source_path}: quantization.calibration: the calibration samples never "
                f"reached graph '{g.name}' (the cascade stopped earlier); use more or other samples"
            )
        qnn = qnn_ep_config(aimet_config, graph_op_chains(fp32[g.name]))
        key = {
            "graph": g.name,
            "fp32": {n: sha256_file(p) for n, p in fp32.items()},  # calibration of later graphs runs earlier ones
            "settings": {**settings.__dict__, "config": qnn.digest if qnn is not None else config_id},
            "calibration": batches_digest(batches),
            "aimet": aimet_version() if g.is_torch else f"aimet-onnx {aimet_onnx_version()}",
            "edgegate": __version__,
            "threads": QUANTIZE_THREADS,
            "qdq_export": QDQ_EXPORT,
        }

        def build(
            d: Path,
            g: GraphSource = g,
            batches: list[tuple[np.ndarray, ...]] = batches,
            qnn: QnnEpConfig | None = qnn,
        ) -> dict[str, Any]:
            s = settings
            if qnn is not None:  # the adjusted config, kept beside what it made
                s = dataclasses.replace(settings, config=str(qnn.write(d / f"{g.name}_aimet_config.json")))
            if g.is_torch:
                res = quantize_graph(load_torch_model(g), g.input_names, g.output_names, batches, s, d, g.name)
            else:
                res = quantize_onnx_graph(fp32[g.name], g.input_names, batches, s, d, g.name)
            # The entry's manifest names its files by artifact kind (targets/aihub.py reads them too).
            meta: dict[str, Any] = {
                ArtifactKind.QDQ_ONNX.value: res.qdq_onnx.name,
                ArtifactKind.ENCODINGS.value: res.encodings.name,
                ArtifactKind.ENCODINGS_ONNX.value: res.encodings_onnx.name,
                "calibration_batches": res.num_calibration_batches,
            }
            if qnn is not None:
                meta.update(aimet_config=f"{g.name}_aimet_config.json", qnn_ep_adjustments=list(qnn.changes))
            return meta

        what = ctx.aimet_config + ("" if g.is_torch else " via aimet-onnx")
        what += f" for QNN's EP: {', '.join(qnn.changes)}" if qnn is not None else ""
        with progress.stage(f"quantize {g.name} (AIMET {what}, {len(batches)} calibration batches)"):
            e = cache.get_or_build("quantized", key, build)
        out[g.name] = QuantizedFiles(*(
            e.file(e.meta[k.value]) for k in (ArtifactKind.QDQ_ONNX, ArtifactKind.ENCODINGS, ArtifactKind.ENCODINGS_ONNX)
        ))
    return out


# ----------------------------------------------------------------------------- compile


def compile_graphs(
    target: Target, onnx_paths: Mapping[str, Path], cache: ArtifactCache, variant: Variant
) -> dict[str, CompiledGraph]:
    """Step 5: compile each graph on the target; cached by (graph digest, target, runtime)."""
    desc = target.describe()
    target_id = target_identity(target)

    def one(graph: str, path: Path) -> CompiledGraph:
        key = {"graph": graph, "onnx": sha256_file(path), "target": target_id, "variant": variant.value,
               "fallback": target.allow_cpu_fallback}

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
    workers = min(len(onnx_paths), int(target.max_parallel_compiles)) or 1
    if workers == 1:
        return {g: one(g, p) for g, p in onnx_paths.items()}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="compile") as pool:
        futures = {g: pool.submit(one, g, p) for g, p in onnx_paths.items()}
        try:
            return {g: f.result() for g, f in futures.items()}
        except BaseException:
            target.cancel()  # Ctrl-C, SIGTERM or a failed graph: stop waiting
            raise


def with_placement(compiled: Mapping[str, CompiledGraph], bench: BenchmarkResult) -> dict[str, CompiledGraph]:
    """Layer placement measured while benchmarking (AI Hub's per-layer compute units, in
    ``bench.details["placement"]``: NPU, GPU, CPU, UNSPECIFIED) replaces the compile-time
    counts: every layer not on the NPU counts as off it (``cpu_nodes``), UNSPECIFIED ones too,
    so that ``npu_fraction`` is the share of layers known to run on the NPU."""
    placement = bench.details.get("placement") or {}
    out = dict(compiled)
    for g, p in placement.items():
        if g in out:
            off_npu = sum(int(n) for unit, n in p.items() if unit != "NPU")
            out[g] = dataclasses.replace(
                out[g], npu_nodes=int(p.get("NPU", 0)), cpu_nodes=off_npu,
                details={**out[g].details, "placement": dict(p)},
            )
    return out


# ----------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class Evaluation:
    predictions: list[Prediction]  # one per sample, in order
    scores: list[ScoreResult]  # one per scorer, in order


def score_predictions(
    scorers: Sequence[Scorer],
    predictions: Sequence[Prediction],
    samples: Sequence[Sample],
    reference: Sequence[Prediction] | None,
    support: Sequence[Sample] = (),
    support_predictions: Sequence[Prediction] = (),
) -> list[ScoreResult]:
    """Every scorer on the same predictions (with the support split's, for few-shot scorers)."""
    if support:
        sup: Support = (list(support_predictions), list(support))
        return [sc.score(predictions, samples, reference, support=sup) for sc in scorers]
    return [sc.score(predictions, samples, reference) for sc in scorers]


def predict(
    adapter: Adapter,
    runner: GraphRunner,
    samples: Sequence[Sample],
    progress: Progress,
    what: str,
) -> list[Prediction]:
    """Step 7a: a prediction for every sample, in order."""
    if not samples:
        return []
    if isinstance(runner, BatchPredictor):  # graph calls of many samples batched (remote targets)
        return list(runner.predict_all(adapter, samples, progress, what))
    return [predict_sample(adapter, s, runner) for s in progress.iterate(samples, what)]


def evaluate(
    adapter: Adapter,
    runner: GraphRunner,
    samples: Sequence[Sample],
    scorers: Sequence[Scorer],
    reference: Sequence[Prediction] | None,
    progress: Progress,
    what: str,
    support: Sequence[Sample] = (),
) -> Evaluation:
    """Step 7: predictions for every sample (and the support split), then every scorer."""
    preds = predict(adapter, runner, samples, progress, what)
    support_preds = predict(adapter, runner, support, progress, what + " (support)")
    return Evaluation(preds, score_predictions(scorers, preds, samples, reference, support, support_preds))


Aggregate = Callable[[Sequence[Mapping[str, Any]]], dict[str, float]]


def combined_aggregate(scorers: Sequence[Scorer]) -> Aggregate | None:
    """Aggregate records shaped {scorer name: that scorer's per-sample record}: what paired
    statistics resample (every Scorer aggregates any subset of its records). None without
    scorers."""
    if not scorers:
        return None

    def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for sc in scorers:
            out.update(sc.aggregate([r[sc.name] for r in records]))
        return out

    return aggregate


# ----------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class VariantMeasurements:
    metrics: dict[str, Measurement]
    latency: dict[str, LatencySummary]  # per graph


def _metric(name: str, value: float, source: Source) -> tuple[str, Measurement]:
    return name, Measurement(float(value), source, get_metric(name).unit)


def variant_metrics(
    bench: BenchmarkResult,
    compiled: Mapping[str, CompiledGraph],
    scores: Sequence[ScoreResult],
    size_bytes: int,
) -> VariantMeasurements:
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
    return VariantMeasurements(m, summaries)


def computed_metrics(values: Mapping[str, float]) -> dict[str, Measurement]:
    """Measurements of metrics EdgeGate computed itself (no timing source), with their units."""
    return dict(_metric(name, value, Source.COMPUTED) for name, value in values.items())
