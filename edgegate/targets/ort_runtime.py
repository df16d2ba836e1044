"""ONNX Runtime session construction shared by the host targets and their benchmark worker.

Kept free of EdgeGate's heavier imports so the worker process starts light: its
post-import resident set is the memory baseline.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

_QNN_REGISTERED = False

# On the CPU a quantized (QDQ) graph runs as its QuantizeLinear/DequantizeLinear ops, i.e. as
# the INT8 numerics AIMET simulated: ORT's fusion of QDQ groups into int8 kernels gave
# MobileNetV2 outputs unrelated to FP32's (cosine 0.17 vs 0.96 unfused), so it stays off.
CPU_DISABLED_OPTIMIZERS = ("QDQSelectorActionTransformer",)

# The packages whose versions shape what a host or emulator compile produces (cache keys, reports).
ORT_PACKAGES = ("onnxruntime", "onnxruntime-qnn")


# Where QNN's native output goes while EdgeGate holds the terminal: a file (``native_log``),
# else stderr. One process, one run: the orchestrator sets it for the run's duration.
_native_log: Path | None = None


@contextmanager
def native_log(path: Path | None) -> Iterator[None]:
    """Send QNN's native chatter to `path` (the run's log) while the context lasts."""
    global _native_log
    before = _native_log
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    _native_log = path
    try:
        yield
    finally:
        _native_log = before


@contextmanager
def native_output_captured() -> Iterator[None]:
    """QNN's native libraries print banners and notes (``# LIBNATIVE: ...``) on fd 1 and 2:
    stdout is kept for reports and the terminal for EdgeGate's own lines, so both go to the
    run's native log, or to stderr when no log is set."""
    _flush()
    saved1 = os.dup(1)
    try:
        saved2 = os.dup(2)
        try:
            sink = (os.open(_native_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    if _native_log is not None else os.dup(2))
            try:
                os.dup2(sink, 1)
                if _native_log is not None:
                    os.dup2(sink, 2)
                try:
                    yield
                finally:
                    _flush()
                    os.dup2(saved1, 1)
                    os.dup2(saved2, 2)
            finally:
                os.close(sink)
        finally:
            os.close(saved2)
    finally:
        os.close(saved1)


def _flush() -> None:
    """Flush Python's buffers before fds move; a full disk must not stop the fds going back."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def qnn_devices() -> list[Any]:
    """Register the onnxruntime-qnn plugin EP once per process and return its devices."""
    global _QNN_REGISTERED
    import onnxruntime as ort

    if not _QNN_REGISTERED:
        import onnxruntime_qnn

        # Registering twice raises; other code in this process may have done it already.
        try:
            ort.register_execution_provider_library(
                "QNNExecutionProvider", onnxruntime_qnn.get_library_path()
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises a bare Fail
            if "already" not in str(exc).lower():
                raise
        _QNN_REGISTERED = True
    return [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]


def session_options(
    kind: str,
    provider_options: Mapping[str, str],
    *,
    allow_cpu_fallback: bool = False,
    context_file: str | None = None,
    intra_op_threads: int | None = None,
    optimized_model_file: str | None = None,
    spin: bool = True,
):
    """SessionOptions for `kind` ("cpu" or "qnn") with EdgeGate's settings. ``spin=False``
    for sessions that share the process with other work (scoring: host glue in torch, the
    emulator's threads): ORT's pool threads otherwise busy-wait after every call and take
    the cores that work needs (measured here: R-Net + one crop resize 2.7 ms a call with
    spinning, 1.2 ms without). Timing sessions (bench_worker) keep ORT's default."""
    import onnxruntime as ort

    # ORT's process-wide logger prints [E:...] lines for conditions EdgeGate turns into its own
    # one-line errors (e.g. unsupported ops); keep it to fatal unless asked.
    ort.set_default_logger_severity(int(os.environ.get("EDGEGATE_ORT_LOG_LEVEL", "4")))
    so = ort.SessionOptions()
    so.log_severity_level = int(os.environ.get("EDGEGATE_ORT_LOG_LEVEL", "4"))
    if intra_op_threads:
        so.intra_op_num_threads = int(intra_op_threads)
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_model_file:
        so.optimized_model_filepath = optimized_model_file
        # A saved model keeps only portable optimizations: ORT_ENABLE_ALL adds NCHWc layout
        # nodes that ORT calls hardware-specific, and whose names differed between two fresh
        # processes (the reproducibility check's CPU artifacts); a session on the saved file
        # applies them again at load.
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if kind == "qnn":
        devices = qnn_devices()
        if not devices:
            raise RuntimeError("onnxruntime-qnn registered no QNNExecutionProvider device")
        so.add_provider_for_devices(devices[:1], dict(provider_options))
        # Fail instead of silently running unsupported ops on the CPU.
        so.add_session_config_entry(
            "session.disable_cpu_ep_fallback", "0" if allow_cpu_fallback else "1"
        )
        if context_file:
            so.add_session_config_entry("ep.context_enable", "1")
            so.add_session_config_entry("ep.context_file_path", context_file)
    return so


def open_session(
    model_path: str | bytes,
    kind: str,
    provider_options: Mapping[str, str],
    *,
    allow_cpu_fallback: bool = False,
    context_file: str | None = None,
    intra_op_threads: int | None = None,
    optimized_model_file: str | None = None,
    spin: bool = True,
):
    import onnxruntime as ort

    options = dict(allow_cpu_fallback=allow_cpu_fallback, context_file=context_file,
                   intra_op_threads=intra_op_threads, optimized_model_file=optimized_model_file, spin=spin)
    if kind != "qnn":
        so = session_options(kind, provider_options, **options)
        return ort.InferenceSession(model_path, sess_options=so, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS))
    with native_output_captured():  # registering the QNN library prints too
        so = session_options(kind, provider_options, **options)
        return ort.InferenceSession(model_path, sess_options=so)
