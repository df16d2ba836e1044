"""AI Hub profiles as EdgeGate reports them: latency, memory, placement and toolchain.

* Latency: every ``all_inference_times`` sample (µs -> ms) is a sample; AI Hub's own
  ``estimated_inference_time`` is kept per graph beside their median.
* Memory is what AI Hub and ai-hub-models show as inference memory:
  ``inference_memory_peak_range``. EdgeGate gates on its upper end (conservative: the worst
  case AI Hub measured). ``estimated_inference_peak_memory`` includes the loaded model, so
  it is kept per graph but never reported as inference memory. Load memory is the upper end
  of ``first_load_memory_peak_range``. Each graph is profiled in its own job and a cascade
  runs its graphs one after another in one process, so the headline is the largest graph,
  not a sum; every graph's numbers are in ``details["memory_per_graph_mb"]``.
* Placement: the per-layer ``compute_unit``; UNSPECIFIED layers are counted (off the NPU),
  never dropped. Without ``allow_cpu_fallback`` a quantized graph with a layer on CPU or GPU
  fails the run (``placement_gate``).
* Toolchain: ``details["toolchain"]`` (aihub_toolchain.merge_toolchains), per graph in
  ``details["profiles"][graph]["toolchain"]``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, Mapping, Sequence

from edgegate.errors import CompileError, TargetError
from edgegate.metrics import Source
from edgegate.targets.aihub_toolchain import merge_toolchains
from edgegate.targets.base import BenchmarkResult, CompiledGraph, GraphTiming

MIB = 1024 * 1024
UNITS = ("NPU", "GPU", "CPU", "UNSPECIFIED")
GATE_SHOWN = 5  # layers named in a placement error; the rest are counted

MEMORY_METHOD = (
    "AI Hub profile: inference memory = upper end of inference_memory_peak_range (conservative: "
    "the worst case AI Hub measured; estimated_inference_peak_memory includes the loaded model and "
    "is not used), load = upper end of first_load_memory_peak_range; each graph profiled in its own "
    "job, headline = the largest graph (a cascade runs its graphs one after another in one process), "
    "per-graph values in details['memory_per_graph_mb']"
)


def _upper_mb(rng: Any) -> float | None:
    return float(rng[1]) / MIB if rng else None


def placement_of(profile: Mapping[str, Any]) -> dict[str, int]:
    units = Counter(str(layer.get("compute_unit") or "UNSPECIFIED").upper() for layer in profile.get("execution_detail") or [])
    return {u: units.get(u, 0) for u in UNITS}


def profile_result(device: str, compiled: Sequence[CompiledGraph], results: Sequence[Mapping[str, Any]]) -> BenchmarkResult:
    """Map AI Hub profiles (``download_profile()`` dicts plus the job's toolchain) onto a
    BenchmarkResult."""
    timings, placement, per_graph, memory, toolchains = [], {}, {}, {}, {}
    resubmitted: list[dict[str, Any]] = []
    for c, r in zip(compiled, results, strict=True):
        es = r["profile"].get("execution_summary") or {}
        est = es.get("estimated_inference_time")
        samples_us = list(es.get("all_inference_times") or ([est] if est else []))
        if not samples_us:
            raise TargetError(f"AI Hub profile job {r['job_id']} (graph '{c.graph}') has no inference time ({r['url']})")
        first, warm = es.get("first_load_time"), es.get("warm_load_time")
        timings.append(GraphTiming(c.graph, tuple(float(t) / 1e3 for t in samples_us), 0, float((first or warm or 0) / 1e3)))
        placement[c.graph] = placement_of(r["profile"])
        inference_rng, load_rng = es.get("inference_memory_peak_range"), es.get("first_load_memory_peak_range")
        memory[c.graph] = {
            "inference_peak_mb": _upper_mb(inference_rng),
            "inference_peak_range_mb": [float(v) / MIB for v in inference_rng] if inference_rng else None,
            "load_peak_mb": _upper_mb(load_rng),
            "load_peak_range_mb": [float(v) / MIB for v in load_rng] if load_rng else None,
        }
        toolchains[c.graph] = dict(r.get("toolchain") or {})
        resubmitted.extend(r.get("resubmitted") or [])
        per_graph[c.graph] = {
            "job_id": r["job_id"], "url": r["url"], "reused_job": r.get("reused_job", False),
            "estimated_inference_time_ms": est / 1e3 if est else None,
            "median_inference_time_ms": statistics.median(samples_us) / 1e3, "samples": len(samples_us),
            "first_load_time_ms": first / 1e3 if first else None, "warm_load_time_ms": warm / 1e3 if warm else None,
            "estimated_inference_peak_memory_bytes": es.get("estimated_inference_peak_memory") or None,
            "inference_memory_peak_range_bytes": list(inference_rng) if inference_rng else None,
            "first_load_memory_peak_range_bytes": list(load_rng) if load_rng else None,
            "toolchain": toolchains[c.graph],
            "resubmitted": list(r.get("resubmitted") or []),
        }

    def largest(field: str) -> float | None:
        values = [m[field] for m in memory.values()]
        return max(values) if values and all(v is not None for v in values) else None  # type: ignore[type-var]

    details: dict[str, Any] = {"device": device, "placement": placement, "profiles": per_graph,
                               "memory_per_graph_mb": memory, "toolchain": merge_toolchains(toolchains),
                               "resubmitted": resubmitted}
    return BenchmarkResult(
        source=Source.AIHUB_PROFILE,
        timings=tuple(timings),
        peak_memory_mb=largest("inference_peak_mb"),
        load_peak_memory_mb=largest("load_peak_mb"),
        memory_method=MEMORY_METHOD,
        details=details,
    )


def placement_gate(target: str, fix_where: str, compiled: Sequence[CompiledGraph],
                   results: Sequence[Mapping[str, Any]]) -> None:
    """Fail when a quantized graph (what ships to the NPU) has a layer on CPU or GPU. The FP32
    baseline is a reference: on v66/v68 parts it runs on GPU/CPU by design, so it is not gated."""
    problems = []
    for c, r in zip(compiled, results, strict=True):
        if not c.details.get("aihub", {}).get("quantized"):
            continue
        layers = r["profile"].get("execution_detail") or []
        off = [f"{layer.get('name')} ({layer.get('type')}) on {layer.get('compute_unit')}" for layer in layers
               if str(layer.get("compute_unit", "")).upper() in ("CPU", "GPU")]
        if off:
            more = f" and {len(off) - GATE_SHOWN} more" if len(off) > GATE_SHOWN else ""
            problems.append(f"graph '{c.graph}' (profile job {r['job_id']}): {len(off)} of {len(layers)} layers off "
                            f"the NPU: {', '.join(off[:GATE_SHOWN])}{more}")
    if problems:
        raise CompileError(
            f"{target}: AI Hub placed layers of a quantized graph on CPU/GPU: {'; '.join(problems)}; change the "
            f"model so the NPU runs every layer, or set allow_cpu_fallback: true in {fix_where} to accept it"
        )
