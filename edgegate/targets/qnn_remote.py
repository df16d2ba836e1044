"""Boards on the bench: the QNN SDK's qnn-net-run on a board reached over ssh or adb.

``QnnRemoteTarget`` = a Transport (``transports``: adb | ssh) x the QNN runner (``qnn_runner``):
the command lines, the profile parser and the memory poll exist once for both kinds.

* compile: on this host (``qnn_prepare``): the host QNN SDK when there is one, else (HTP boards
  only) the QNN HTP emulator's context binary. Nothing touches the board.
* benchmark, per graph: the compiled graph and a real input pushed once; one warmup process
  (``--num_inferences warmup``, discarded), then up to ``max_rounds`` profiled qnn-net-run
  processes that share ``repeats`` inferences (or ``min_seconds`` through ``--duration``). Each
  process is one latency sample: the mean per-inference time its profile reports ("Execute Stats
  (Average)" NetRun, summed over the context's graphs); its Min/Max, accelerator and RPC times and
  IPS are kept in the details. ``load_time_ms`` is the profile's Init time (backend + context load).
  Source ``device``: these are the board's clocks.
* open(): a session whose every ``run`` is one qnn-net-run process with one input line, so the
  eval split is scored on the board's outputs.
* ``runs_fp32`` is False: the DSP/HTP backends run the quantized graph; the FP32 golden runs on the
  host CPU, as for the emulator.

The run's scratch directory on the board (``workdir/edgegate-<id>``) is removed by ``close()``,
which the orchestrator calls when a variant ends, and when a benchmark fails. A failed benchmark
keeps what it measured so far in ``<work_dir>/qnn/`` and says so in its error.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import shutil
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgegate.errors import EdgeGateError, InputError, SpecError, TargetError
from edgegate.metrics import Source
from edgegate.targets.base import BenchmarkResult, CompiledGraph, GraphTiming, TargetBase
from edgegate.targets.qnn_prepare import (
    Prepared,
    TensorInfo,
    host_sdk_root,
    missing_sdk_error,
    prepare_with_emulator,
    prepare_with_sdk,
    sdk_version,
)
from edgegate.targets.qnn_runner import MEMORY_METHOD, BoardLayout, QnnRunner
from edgegate.targets.ort_runtime import ORT_PACKAGES
from edgegate.targets.transports import AdbTransport, SshTransport, Transport
from edgegate.versions import package_versions

log = logging.getLogger(__name__)


def make_transport(device: Any) -> Transport:
    """The Transport a device file describes (nothing is connected until first use)."""
    common = dict(connect_timeout=device.connect_timeout_s, command_timeout=device.command_timeout_s,
                  reconnect_attempts=device.reconnect_attempts)
    if device.kind == "ssh":
        return SshTransport(
            device.host, device.user, port=device.port, key_file=device.key_file,
            known_hosts=device.known_hosts, trust_host_key=device.trust_host_key,
            device_file=str(device.source_path or f"device '{device.name}'"), **common,
        )
    if device.kind == "adb":
        return AdbTransport(device.serial, adb_host=device.adb_host, adb_port=device.adb_port, **common)
    raise InputError(f"device '{device.name}': kind '{device.kind}' is not a board kind (ssh, adb)")


class _RemoteSession:
    """One compiled graph on the board: every run() is one qnn-net-run process."""

    def __init__(self, target: QnnRemoteTarget, compiled: CompiledGraph) -> None:
        self.target, self.compiled = target, compiled
        self.inputs = [TensorInfo.from_json(t) for t in compiled.details["qnn_inputs"]]
        self.outputs = [TensorInfo.from_json(t) for t in compiled.details["qnn_outputs"]]
        self.calls = 0

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        t = self.target
        runner = t._runner()
        model = runner.stage(str(self.compiled.artifact), self.compiled.files)
        self.calls += 1
        local = t._session_dir() / f"{self.compiled.graph}-{self.calls:05d}"
        try:
            res = runner.run(
                tag=f"{self.compiled.graph}-infer", model=model, model_flag=self.compiled.details["model_flag"],
                inputs=self.inputs, outputs=self.outputs, feeds=[feeds], local_dir=local,
            )
        finally:
            shutil.rmtree(local, ignore_errors=True)  # inputs/outputs of one call: nothing to keep
        return res.outputs[0]


class QnnRemoteTarget(TargetBase):
    """qnn-net-run on a board over ssh or adb (see the module docstring)."""

    source = Source.DEVICE
    runs_fp32 = False  # DSP/HTP run quantized graphs; the FP32 golden runs on the host CPU
    allow_cpu_fallback = False

    def __init__(self, device: Any, transport: Transport | None = None) -> None:
        if device.arch is None:
            raise SpecError(
                str(device.source_path or f"device '{device.name}'"), "arch",
                f"field required for kind {device.kind}: the board's Hexagon version (v66 for RB5), "
                "which picks the DSP/HTP libraries and the AIMET config",
            )
        self.device = device
        self.name = device.name
        self._transport_given = transport
        self._transport: Transport | None = None
        self._runner_obj: QnnRunner | None = None
        self._sessions_tmp: Path | None = None
        self.host_sdk = host_sdk_root(device.qnn_sdk_host, device.source_label)
        self.htp_arch = device.htp_arch or (int(device.arch[1:]) if device.backend == "htp" else None)
        atexit.register(self.close)

    # ------------------------------------------------------------------ describe / compile

    @property
    def prepared_by(self) -> str:
        if self.host_sdk is not None:
            return f"QNN SDK {sdk_version(self.host_sdk)} on the host"
        return "QNN HTP emulator (onnxruntime-qnn) context binary"

    @property
    def where(self) -> str:
        """The board as reached: user@host:port over ssh, serial@adb-server over adb."""
        d = self.device
        if d.kind == "ssh":
            return f"{d.user}@{d.host}:{d.port}"
        return f"{d.serial or '(only device)'}@{d.adb_host}:{d.adb_port}"

    def describe(self) -> dict[str, Any]:
        d = self.device
        where = self.where
        versions = package_versions(ORT_PACKAGES)
        if self.host_sdk is not None:
            versions["qnn-sdk-host"] = sdk_version(self.host_sdk)
        return {
            "kind": d.kind,
            "name": self.name,
            "runtime": f"qnn-net-run ({d.backend} backend, {d.target_triple}); prepared by {self.prepared_by}",
            "connection": f"{d.kind} {where}",
            "chipset": d.chipset,
            "arch": d.arch,
            "backend": d.backend,
            "htp_arch": self.htp_arch,
            "soc_model": d.soc_model,
            "target_triple": d.target_triple,
            "performance_mode": d.perf_profile,
            "timing_source": self.source.value,
            "memory": "CPU-side memory of the qnn-net-run process (DSP/HTP memory not included)",
            "description": d.description or "",
            "versions": versions,
        }

    def compile(self, graph: str, onnx_path: Path, out_dir: Path) -> CompiledGraph:
        d = self.device
        if self.host_sdk is not None:
            p: Prepared = prepare_with_sdk(
                graph, onnx_path, out_dir, root=self.host_sdk, backend=d.backend, triple=d.target_triple,
                dsp_arch=f"v{self.htp_arch}" if self.htp_arch else d.arch, soc_model=d.soc_model,
            )
        elif d.backend == "dsp":
            raise missing_sdk_error(self.name, d.arch)
        else:
            p = prepare_with_emulator(self.name, graph, onnx_path, out_dir, htp_arch=self.htp_arch, soc_model=d.soc_model)
        details = {**p.details, "model_flag": p.model_flag}
        return CompiledGraph(graph, p.artifact, p.files, p.npu_nodes, p.cpu_nodes, (),
                             float(details.get("prepare_ms", 0.0)), details)

    # ------------------------------------------------------------------ board connection

    def _runner(self) -> QnnRunner:
        if self._runner_obj is None:
            d = self.device
            self._transport = self._transport_given or make_transport(d)
            layout = BoardLayout(d.qnn_sdk_device, d.target_triple, d.backend, d.arch, dict(d.env))
            scratch = f"{d.workdir.rstrip('/')}/edgegate-{uuid.uuid4().hex[:12]}"
            runner = QnnRunner(self._transport, layout, scratch=scratch, command_timeout=d.command_timeout_s,
                               host_sdk=self.host_sdk, keep_remote=d.keep_remote_files, perf_profile=d.perf_profile)
            self._runner_obj = runner
            runner.start(push_runtime=d.push_runtime)
        return self._runner_obj

    def _session_dir(self) -> Path:
        if self._sessions_tmp is None:
            self._sessions_tmp = Path(tempfile.mkdtemp(prefix="edgegate-qnn-"))
        return self._sessions_tmp

    def close(self) -> None:
        self.cleanup()

    def cleanup(self) -> str | None:
        """Remove the board's scratch directory and disconnect; the problem as text, if any."""
        problem = None
        if self._runner_obj is not None:
            problem = self._runner_obj.cleanup()
            self._runner_obj = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._sessions_tmp is not None:
            shutil.rmtree(self._sessions_tmp, ignore_errors=True)
            self._sessions_tmp = None
        return problem

    def open(self, compiled: CompiledGraph) -> _RemoteSession:
        return _RemoteSession(self, compiled)

    # ------------------------------------------------------------------ benchmark

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
        """Every round is its own qnn-net-run process on the board, one sample each (its mean
        per-inference time), so the rounds already are the process-level replicates that
        significance is tested on; `processes` adds nothing here."""
        out = work_dir / "qnn"
        out.mkdir(parents=True, exist_ok=True)
        rounds = min(repeats, self.device.max_rounds)
        per_round = math.ceil(repeats / rounds)
        duration = max(1, math.ceil(min_seconds / rounds)) if min_seconds > 0 else None
        progress: dict[str, Any] = {"rounds": rounds, "inferences_per_round": per_round,
                                    "duration_s_per_round": duration, "graphs": {}}
        timings: list[GraphTiming] = []
        peak = {"vmhwm_kb": None, "vmrss_kb": None, "pss_kb": None}
        try:
            runner = self._runner()
            progress["qnn_net_run_version"] = runner.version
            for c in compiled:
                session = _RemoteSession(self, c)
                model = runner.stage(str(c.artifact), c.files)
                common = dict(model=model, model_flag=c.details["model_flag"], inputs=session.inputs,
                              outputs=session.outputs, feeds=[feeds[c.graph]], want_outputs=False)
                if warmup > 0:
                    runner.run(tag=f"{c.graph}-warmup", local_dir=out / c.graph / "warmup",
                               num_inferences=warmup, **common)
                records = progress["graphs"].setdefault(c.graph, [])
                for k in range(rounds):
                    r = runner.run(tag=f"{c.graph}-round{k}", local_dir=out / c.graph / f"round_{k}", profile=True,
                                   num_inferences=None if duration else per_round, duration_s=duration, **common)
                    summary = r.profile.summary() if r.profile is not None else {}
                    records.append({**summary, "vmhwm_kb": r.memory.vmhwm_kb,
                                    "vmrss_kb": r.memory.vmrss_kb, "pss_kb": r.memory.pss_kb,
                                    "wall_s": r.wall_s})
                    for key in peak:
                        value = getattr(r.memory, key)
                        if value is not None:
                            peak[key] = max(peak[key] or 0, value)
                    (out / "benchmark.json").write_text(json.dumps(progress, indent=1))
                samples = tuple(rec["netrun_avg_ms"] for rec in records)
                inits = [rec["init_ms"] for rec in records if rec["init_ms"] is not None]
                timings.append(GraphTiming(c.graph, samples, warmup, statistics.fmean(inits) if inits else 0.0,
                                           tuple(range(len(samples)))))
        except BaseException as exc:
            problem = self.cleanup()
            if isinstance(exc, EdgeGateError):
                extra = f"; {problem}" if problem else ""
                raise TargetError(f"{self.name}: {exc.message}; partial results kept in {out}{extra}") from exc
            raise
        peak_mb = None if peak["vmhwm_kb"] is None else peak["vmhwm_kb"] / 1024
        return BenchmarkResult(
            source=self.source,
            timings=tuple(timings),
            peak_memory_mb=peak_mb,
            load_peak_memory_mb=None,
            memory_method=MEMORY_METHOD,
            details={
                **progress,
                "peak_vmrss_mb": None if peak["vmrss_kb"] is None else peak["vmrss_kb"] / 1024,
                "peak_pss_mb": None if peak["pss_kb"] is None else peak["pss_kb"] / 1024,
                "reconnects": getattr(self._transport, "reconnects", 0),
                # what ran the graphs: compared between runs like AI Hub's QAIRT version
                "toolchain": {"qnn_sdk": progress.get("qnn_net_run_version"), "device": self.where},
                "sample": "mean per-inference time of one qnn-net-run process (profile Execute Average NetRun)",
                "profiles": str(out),
            },
        )


def target_for_device(device: Any) -> QnnRemoteTarget:
    """Build the board target for a DeviceSpec of kind ssh or adb."""
    return QnnRemoteTarget(device)
