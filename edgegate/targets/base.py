"""The Target protocol: how the orchestrator reaches hardware without knowing which.

A target compiles one ONNX graph into its own artifact, opens a session on a compiled
artifact for inference, and benchmarks a set of compiled graphs. Targets return raw
measurements (every latency sample); summaries are computed in ``edgegate.stats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """One way of reaching hardware (local CPU, QNN HTP emulator, AI Hub, a board)."""

    name: str
    source: Source  # where this target's timings come from
    runs_fp32: bool  # can run the FP32 baseline (else the baseline runs on the host CPU)

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
    ) -> BenchmarkResult: ...
