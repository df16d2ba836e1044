"""Host targets: ONNX Runtime on the CPU, and the QNN HTP emulator in onnxruntime-qnn.

The emulator (libQnnHtp.so on x86_64) really compiles the graph with QNN, places ops,
writes a context binary and computes with HTP numerics; its timings are host timings
(source ``host-emulator``) and are never presented as device latency.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgegate.errors import CompileError, TargetError
from edgegate.metrics import Source
from edgegate.targets.base import BenchmarkResult, CompiledGraph, GraphTiming, TargetBase, merge_processes
from edgegate.targets.ort_runtime import ORT_PACKAGES, open_session
from edgegate.versions import package_versions

log = logging.getLogger(__name__)


_QDQ = ("QuantizeLinear", "DequantizeLinear")


class _OrtSession:
    def __init__(self, sess: Any) -> None:
        self._sess = sess
        self.input_names = [i.name for i in sess.get_inputs()]
        self.output_names = [o.name for o in sess.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self._sess.run(None, dict(feeds))


class _OrtTarget(TargetBase):
    """What the CPU and emulator targets share: sessions, the worker, describe()."""

    name: str
    source: Source
    _kind: str  # "cpu" | "qnn" for ort_runtime
    deterministic = True  # this host computes the same outputs from the same compiled bytes

    def _provider_options(self) -> dict[str, str]:
        return {}

    def _threads(self) -> int | None:
        return None

    def open(self, compiled: CompiledGraph) -> _OrtSession:
        try:
            sess = open_session(
                str(compiled.artifact),
                self._kind,
                self._provider_options(),
                allow_cpu_fallback=self.allow_cpu_fallback,
                intra_op_threads=self._threads(),
                spin=False,  # scoring: the pool must not busy-wait against host glue (ort_runtime)
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail type
            raise TargetError(
                f"{self.name}: cannot load compiled graph '{compiled.graph}' "
                f"({compiled.artifact}): {exc}"
            ) from exc
        return _OrtSession(sess)

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
        """Each of `processes` fresh worker processes loads every graph and times it; samples
        are tagged with their process (run-to-run variance lives between processes)."""
        if processes < 1:
            raise ValueError(f"{self.name}: benchmark processes must be >= 1, got {processes}")
        work_dir.mkdir(parents=True, exist_ok=True)
        graphs = []
        for c in compiled:  # written once, read by every worker
            npz = work_dir / f"{c.graph}_inputs.npz"
            np.savez(npz, **{k: np.asarray(v) for k, v in feeds[c.graph].items()})
            graphs.append({"graph": c.graph, "artifact": str(c.artifact), "inputs": str(npz)})
        request = {
            "kind": self._kind,
            "provider_options": self._provider_options(),
            "allow_cpu_fallback": self.allow_cpu_fallback,
            "intra_op_threads": self._threads(),
            "graphs": graphs,
            "warmup": warmup,
            "repeats": repeats,
            "min_seconds": min_seconds,
        }
        dirs = [work_dir] if processes == 1 else [work_dir / f"process{i}" for i in range(processes)]
        return merge_processes([self._benchmark_process(request, d) for d in dirs])

    def _benchmark_process(self, request: dict[str, Any], work_dir: Path) -> BenchmarkResult:
        """One fresh worker process runs `request`; its files go to `work_dir`."""
        work_dir.mkdir(parents=True, exist_ok=True)
        req_path = work_dir / "bench_request.json"
        res_path = work_dir / "bench_result.json"
        req_path.write_text(json.dumps(request))
        res_path.unlink(missing_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "edgegate.targets.bench_worker", str(req_path), str(res_path)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if proc.returncode != 0 or not res_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise TargetError(
                f"{self.name}: benchmark worker failed (exit {proc.returncode}): {tail[0]}"
            )
        res = json.loads(res_path.read_text())
        timings = tuple(
            GraphTiming(t["graph"], tuple(t["samples_ms"]), t["warmup"], t["load_time_ms"])
            for t in res["timings"]
        )
        return BenchmarkResult(
            source=self.source,
            timings=timings,
            peak_memory_mb=res["peak_memory_mb"],
            load_peak_memory_mb=res["load_peak_memory_mb"],
            memory_method=res["memory_method"],
            details={"baseline_rss_mb": res["baseline_rss_mb"]},
        )


def _count_nodes(onnx_path: Path) -> int:
    import onnx

    return len(onnx.load(str(onnx_path), load_external_data=False).graph.node)


class CpuTarget(_OrtTarget):
    """ONNX Runtime's CPU execution provider on this host (source ``host-cpu``)."""

    _kind = "cpu"
    source = Source.HOST_CPU
    runs_fp32 = True

    def __init__(self, name: str = "cpu", intra_op_threads: int | None = None, description: str = "") -> None:
        self.name = name
        self.intra_op_threads = intra_op_threads
        self.description = description or "ONNX Runtime CPU execution provider on this host"

    def _threads(self) -> int | None:
        return self.intra_op_threads

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "cpu",
            "name": self.name,
            # part of the compile key: what the saved artifact holds (see ort_runtime)
            "runtime": "onnxruntime-cpu (extended optimizations saved, QDQ ops unfused)",
            "chipset": None,
            "arch": None,
            "timing_source": self.source.value,
            "description": self.description,
            "versions": package_versions(ORT_PACKAGES),
        }

    def compile(self, graph: str, onnx_path: Path, out_dir: Path) -> CompiledGraph:
        """'Compiling' for the CPU: ORT's graph optimisations, saved as the artifact."""
        out_dir.mkdir(parents=True, exist_ok=True)
        artifact = out_dir / f"{graph}_ort_cpu.onnx"
        t0 = time.perf_counter()
        try:
            open_session(
                str(onnx_path),
                "cpu",
                {},
                intra_op_threads=self.intra_op_threads,
                optimized_model_file=str(artifact),
            )
        except Exception as exc:  # noqa: BLE001
            raise CompileError(f"{self.name}: ONNX Runtime CPU cannot load graph '{graph}': {exc}") from exc
        ms = (time.perf_counter() - t0) * 1e3
        n = _count_nodes(onnx_path)
        return CompiledGraph(graph, artifact, (artifact,), 0, n, (), ms, {"runtime": "onnxruntime-cpu"})


class QnnEmulatorTarget(_OrtTarget):
    """QNN HTP emulator (libQnnHtp.so in onnxruntime-qnn): real QNN compile, host timings."""

    _kind = "qnn"
    source = Source.HOST_EMULATOR
    runs_fp32 = False  # the HTP runs quantized graphs

    def __init__(
        self,
        name: str,
        *,
        soc_model: str | None,
        htp_arch: int | None,
        performance_mode: str = "burst",
        allow_cpu_fallback: bool = False,
        arch: str | None = None,
        chipset: str | None = None,
        description: str = "",
    ) -> None:
        self.name = name
        self.soc_model = soc_model
        self.htp_arch = htp_arch
        self.performance_mode = performance_mode
        self.allow_cpu_fallback = allow_cpu_fallback
        self.arch = arch
        self.chipset = chipset
        self.description = description

    def _provider_options(self) -> dict[str, str]:
        opts = {"backend_type": "htp", "htp_performance_mode": self.performance_mode}
        if self.soc_model:
            opts["soc_model"] = str(self.soc_model)
        if self.htp_arch:
            opts["htp_arch"] = str(self.htp_arch)
        return opts

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "qnn-emulator",
            "name": self.name,
            # part of the compile key: each graph compiles in a fresh process (targets.qnn_compile)
            "runtime": "onnxruntime-qnn (QNN HTP emulator, x86_64 host; one process per compile)",
            "chipset": self.chipset,
            "arch": self.arch,
            "htp_arch": self.htp_arch,
            "soc_model": self.soc_model,
            "performance_mode": self.performance_mode,
            "timing_source": self.source.value,
            "description": self.description,
            "versions": package_versions(ORT_PACKAGES),
        }

    def compile(self, graph: str, onnx_path: Path, out_dir: Path) -> CompiledGraph:
        """Compile with QNN, CPU fallback disabled, and keep the EP-context model + binary."""
        out_dir.mkdir(parents=True, exist_ok=True)
        ctx = out_dir / f"{graph}_qnn_ctx.onnx"
        total = _count_nodes(onnx_path)
        t0 = time.perf_counter()
        error = self._compile_in_fresh_process(onnx_path, ctx, allow_cpu_fallback=False)
        if error is not None:
            for stale in out_dir.glob(f"{graph}_qnn_ctx*"):  # a failed attempt may leave a binary
                stale.unlink()
            if "fallback to CPU EP has been explicitly disabled" not in error:
                raise CompileError(f"{self.name}: QNN failed to compile graph '{graph}': {error}")
            return self._compile_with_fallback(graph, onnx_path, out_dir, ctx, total)
        ms = (time.perf_counter() - t0) * 1e3
        files = self._context_files(ctx)
        return CompiledGraph(graph, ctx, files, total, 0, (), ms, {"provider_options": self._provider_options()})

    def _compile_with_fallback(
        self, graph: str, onnx_path: Path, out_dir: Path, ctx: Path, total: int
    ) -> CompiledGraph:
        """Some ops cannot go on the NPU: find which, then fail or (if allowed) keep them on CPU."""
        import onnx

        probe = out_dir / f"{graph}_qnn_ctx_fallback.onnx"
        t0 = time.perf_counter()
        error = self._compile_in_fresh_process(onnx_path, probe, allow_cpu_fallback=True)
        if error is not None:
            raise CompileError(f"{self.name}: QNN failed to compile graph '{graph}': {error}")
        ms = (time.perf_counter() - t0) * 1e3
        nodes = onnx.load(str(probe), load_external_data=False).graph.node
        cpu = [n for n in nodes if n.op_type != "EPContext"]
        cpu_ops = tuple(f"{n.op_type}({n.name})" for n in cpu)
        if not self.allow_cpu_fallback:
            for f in self._context_files(probe):
                f.unlink(missing_ok=True)
            # Q/DQ nodes land on the CPU only because the op they wrap did not go to QNN.
            culprits = [f"{n.op_type}({n.name})" for n in cpu if n.op_type not in _QDQ] or list(cpu_ops)
            shown = ", ".join(culprits[:5]) + (f" and {len(culprits) - 5} more" if len(culprits) > 5 else "")
            extra = len(cpu) - len(culprits)
            around = f" (plus {extra} Quantize/DequantizeLinear node(s) around them)" if extra else ""
            raise CompileError(
                f"{self.name}: graph '{graph}': ops not supported by the QNN HTP backend: {shown}"
                f"{around}; {len(cpu)} of {total} ONNX nodes would run on the host CPU; change the "
                "model, or set allow_cpu_fallback: true in the device file to accept that"
            )
        return CompiledGraph(
            graph, probe, self._context_files(probe), total - len(cpu), len(cpu), cpu_ops, ms,
            {"provider_options": self._provider_options(), "cpu_fallback": True},
        )

    def _compile_in_fresh_process(self, onnx_path: Path, context_file: Path, *, allow_cpu_fallback: bool) -> str | None:
        """QNN's compile in a process of its own (``targets.qnn_compile``: the bytes would
        otherwise depend on what this process compiled before); None, or the error text."""
        with tempfile.TemporaryDirectory(prefix="edgegate-qnn-compile-") as tmp:
            req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
            req.write_text(json.dumps({"model": str(onnx_path), "context_file": str(context_file),
                                       "provider_options": self._provider_options(),
                                       "allow_cpu_fallback": allow_cpu_fallback}))
            proc = subprocess.run([sys.executable, "-m", "edgegate.targets.qnn_compile", str(req), str(res)],
                                  capture_output=True, text=True)
            if res.is_file():  # it got as far as saying how the compile went
                return json.loads(res.read_text())["error"]
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            return f"the compile process ended with exit code {proc.returncode}" + (f": {tail[0]}" if tail else "")

    @staticmethod
    def _context_files(ctx: Path) -> tuple[Path, ...]:
        """The EP-context ONNX and the QNN context binaries it references."""
        import onnx

        files = [ctx]
        for node in onnx.load(str(ctx), load_external_data=False).graph.node:
            if node.op_type != "EPContext":
                continue
            for a in node.attribute:
                if a.name == "ep_cache_context" and a.s:
                    cand = ctx.parent / a.s.decode()
                    if cand.exists():
                        files.append(cand)
        return tuple(files)


def target_for_device(device: Any) -> _OrtTarget:
    """Build the host target for a DeviceSpec of kind cpu or qnn-emulator."""
    kind = device.kind
    if kind == "cpu":
        return CpuTarget(device.name, getattr(device, "intra_op_threads", None), device.description or "")
    if kind == "qnn-emulator":
        return QnnEmulatorTarget(
            device.name,
            soc_model=device.soc_model,
            htp_arch=device.htp_arch,
            performance_mode=device.performance_mode,
            allow_cpu_fallback=device.allow_cpu_fallback,
            arch=device.arch,
            chipset=device.chipset,
            description=device.description or "",
        )
    raise TargetError(f"device '{device.name}': kind '{kind}' is not a host target")
