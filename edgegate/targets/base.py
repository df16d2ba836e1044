"""The Target protocol: how the orchestrator reaches hardware without knowing which.

A target compiles one ONNX graph into its own artifact, opens a session on a compiled
artifact for inference, and benchmarks a set of compiled graphs. Targets return raw
measurements (every latency sample); summaries are computed in ``edgegate.stats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from edgegate.metrics import Source


class Variant(str, Enum):
    FP32 = "fp32"
    INT8 = "int8"


@dataclass(frozen=True)
class CompiledGraph:
    """A graph compiled for one target: the artifact files and where its ops landed."""

    graph: str
    artifact: Path  # the file a session is opened on (e.g. the EP-context ONNX)
    files: tuple[Path, ...]  # every file the artifact needs (context binary, ...)
    npu_nodes: int  # ONNX nodes placed on the accelerator (0 for CPU targets)
    cpu_nodes: int  # ONNX nodes left on the host CPU
    cpu_ops: tuple[str, ...] = ()  # "OpType(node name)" of CPU-placed nodes
    compile_time_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphTiming:
    graph: str
    samples_ms: tuple[float, ...]  # every timed repeat, in order
    warmup: int
    load_time_ms: float  # session creation on the compiled artifact
    # The benchmark process each sample came from (aligned with samples_ms), where the
    # target runs several: run-to-run variance lives between processes, not within one,
    # so significance is tested on process-level values (edgegate.compare). Empty: unknown.
    process_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class BenchmarkResult:
    source: Source
    timings: tuple[GraphTiming, ...]
    peak_memory_mb: float | None  # resident high-water mark while running, over the baseline
    load_peak_memory_mb: float | None
    memory_method: str  # how the memory numbers were measured, for the report
    details: dict[str, Any] = field(default_factory=dict)


class GraphSession(Protocol):
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class Target(Protocol):
    """One way of reaching hardware (local CPU, QNN HTP emulator, AI Hub, a board).

    Every capability the orchestrator uses is listed here; the optional ones have defaults
    in ``TargetBase``, which every target derives from, so nothing is probed with getattr.
    """

    name: str
    source: Source  # where this target's timings come from
    runs_fp32: bool  # can run the FP32 baseline (else the baseline runs on the host CPU)
    max_parallel_compiles: int  # graphs compiled at once (remote farms: all; host: one)
    allow_cpu_fallback: bool  # ops the NPU cannot run may fall back to the CPU (part of the compile key)
    batches_calls: bool  # run_batch runs many calls of one graph as one job (remote targets)
    # A compiled graph's outputs are a function of its bytes and inputs (host CPU, emulator):
    # results computed from it may be reused by a later run (run.reuse). Never for a device.
    deterministic: bool

    def describe(self) -> dict[str, Any]:
        """Kind, name, chipset, arch, runtime versions: for reports and evidence."""
        ...

    def compile(self, graph: str, onnx_path: Path, out_dir: Path) -> CompiledGraph: ...

    def open(self, compiled: CompiledGraph) -> GraphSession: ...

    def benchmark(
        self,
        compiled: Sequence[CompiledGraph],
        feeds: Mapping[str, Mapping[str, np.ndarray]],
        *,
        warmup: int,
        repeats: int,
        min_seconds: float,
        work_dir: Path,
        processes: int = 1,
    ) -> BenchmarkResult:
        """Time every graph: `warmup` untimed then `repeats` timed runs per graph in each of
        `processes` fresh benchmark processes (where the target can start them)."""
        ...

    def run_batch(
        self, compiled: CompiledGraph, feeds_list: Sequence[Mapping[str, np.ndarray]]
    ) -> list[list[np.ndarray]]:
        """Outputs of many calls of one graph, as one job (only where ``batches_calls``)."""
        ...

    def attach_run(self, db: Any, run_id: int) -> None:
        """Record remote jobs against this database run (AI Hub's job ledger)."""
        ...

    def cancel(self) -> None:
        """Stop waiting for jobs in flight (Ctrl-C, SIGTERM, a failed graph)."""
        ...

    def close(self) -> None:
        """Release the target after a variant: scratch files on a board, connections."""
        ...


class TargetBase:
    """Defaults for a target's optional capabilities; a target overrides what it has and
    implements the rest of the ``Target`` protocol (describe, compile, open, benchmark)."""

    name: str
    source: Source
    runs_fp32: bool = False
    max_parallel_compiles: int = 1
    allow_cpu_fallback: bool = False
    batches_calls: bool = False
    deterministic: bool = False

    def run_batch(
        self, compiled: CompiledGraph, feeds_list: Sequence[Mapping[str, np.ndarray]]
    ) -> list[list[np.ndarray]]:
        raise NotImplementedError(f"{type(self).__name__} runs one call at a time (batches_calls is False)")

    def attach_run(self, db: Any, run_id: int) -> None:
        return None

    def cancel(self) -> None:
        return None

    def close(self) -> None:
        return None


def merge_processes(results: Sequence[BenchmarkResult], process_ids: Sequence[int] | None = None) -> BenchmarkResult:
    """One result from single-process benchmarks: samples concatenated, each tagged with its
    process (``process_ids[i]`` for ``results[i]``, default i); peak memory is the largest
    process's; load times are averaged."""
    if not results:
        raise ValueError("merge_processes: no results")
    ids = list(range(len(results))) if process_ids is None else list(process_ids)
    first = results[0]
    timings = []
    for g in (t.graph for t in first.timings):
        samples: list[float] = []
        procs: list[int] = []
        loads: list[float] = []
        for pid, r in zip(ids, results):
            t = next(t for t in r.timings if t.graph == g)
            samples.extend(t.samples_ms)
            procs.extend([pid] * len(t.samples_ms))
            loads.append(t.load_time_ms)
        warmup = next(t for t in first.timings if t.graph == g).warmup
        timings.append(GraphTiming(g, tuple(samples), warmup, sum(loads) / len(loads), tuple(procs)))

    def peak(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    details = dict(first.details)
    details["processes"] = len(results)
    details["per_process_peak_memory_mb"] = [r.peak_memory_mb for r in results]
    return BenchmarkResult(
        source=first.source,
        timings=tuple(timings),
        peak_memory_mb=peak([r.peak_memory_mb for r in results]),
        load_peak_memory_mb=peak([r.load_peak_memory_mb for r in results]),
        memory_method=first.memory_method + (f"; the largest of {len(results)} processes" if len(results) > 1 else ""),
        details=details,
    )


def benchmark_interleaved(
    target: Target,
    baseline: tuple[Sequence[CompiledGraph], Mapping[str, Mapping[str, np.ndarray]]],
    candidate: tuple[Sequence[CompiledGraph], Mapping[str, Mapping[str, np.ndarray]]],
    *,
    warmup: int,
    repeats: int,
    min_seconds: float,
    processes: int,
    work_dir: Path,
) -> tuple[BenchmarkResult, BenchmarkResult]:
    """An A/B latency measurement on one target at one time.

    Each side runs in `processes` fresh benchmark processes, in the order A B, B A, A B, ...
    so that slow drift of the machine (other tenants, clocks, heat) falls on both sides alike,
    and process i of the baseline is paired with process i of the candidate. Two runs benchmarked
    minutes apart cannot tell a 5% regression from a 5% slower machine; this can
    (bench/aa_false_alarm.py measures both ways).
    """
    if processes < 1:
        raise ValueError(f"benchmark_interleaved: processes must be >= 1, got {processes}")
    out: dict[str, list[BenchmarkResult]] = {"a": [], "b": []}
    sides = {"a": baseline, "b": candidate}
    for i in range(processes):
        for side in ("a", "b") if i % 2 == 0 else ("b", "a"):
            compiled, feeds = sides[side]
            out[side].append(target.benchmark(
                compiled, feeds, warmup=warmup, repeats=repeats, min_seconds=min_seconds,
                work_dir=work_dir / f"{side}{i}", processes=1,
            ))
    a, b = merge_processes(out["a"]), merge_processes(out["b"])
    return (
        replace(a, details={**a.details, "interleaved_with": "candidate"}),
        replace(b, details={**b.details, "interleaved_with": "baseline"}),
    )
