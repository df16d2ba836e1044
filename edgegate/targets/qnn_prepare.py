"""Prepare a quantized graph for qnn-net-run on a board, on this host.

Two ways, chosen by what is installed:

* The QNN SDK on this host ($QNN_SDK_ROOT, or ``qnn_sdk_host`` in the device file):
  ``qnn-onnx-converter`` on AIMET's plain ONNX with ``--quantization_overrides`` from AIMET's
  ``.encodings`` (so the board runs AIMET's quantization, not the converter's own), then
  ``qnn-model-lib-generator``; for HTP also ``qnn-context-binary-generator`` (a context binary
  for the device's HTP arch). The DSP backend (Hexagon v66, RB5) runs the model library itself.
* Without it, for HTP boards only: the QNN HTP emulator in onnxruntime-qnn compiles the QDQ
  graph and its EP context holds a QNN context binary, which qnn-net-run loads with
  ``--retrieve_context`` (the board's QNN runtime must accept that QNN version's binaries).

The converter needs an ``--input_list`` to quantize at all; AIMET's encodings cover every tensor
AIMET quantized and take precedence, so the one synthetic input written here only fills tensors
the overrides leave out.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgegate.errors import CompileError, InputError
from edgegate.versions import package_versions

HOST_TRIPLE = "x86_64-linux-clang"
CONVERTER = "qnn-onnx-converter"
MODEL_LIB_GENERATOR = "qnn-model-lib-generator"
CONTEXT_GENERATOR = "qnn-context-binary-generator"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> TensorInfo:
        return TensorInfo(d["name"], tuple(int(x) for x in d["shape"]))


@dataclass(frozen=True)
class Prepared:
    artifact: Path  # what qnn-net-run loads: a context binary or a model library
    files: tuple[Path, ...]  # every file to push (artifact first)
    model_flag: str  # "--retrieve_context" | "--model"
    npu_nodes: int
    cpu_nodes: int
    details: dict[str, Any]


def graph_io(onnx_path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Graph inputs and outputs with static shapes (qnn-net-run reads and writes raw float32)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}

    def info(vi: Any) -> TensorInfo:
        dims = vi.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            raise CompileError(f"{onnx_path.name}: tensor '{vi.name}' has a dynamic shape; boards need static shapes")
        return TensorInfo(vi.name, tuple(int(d.dim_value) for d in dims))

    inputs = [info(v) for v in model.graph.input if v.name not in inits]
    return inputs, [info(v) for v in model.graph.output]


def count_nodes(onnx_path: Path) -> int:
    import onnx

    return len(onnx.load(str(onnx_path), load_external_data=False).graph.node)


# ----------------------------------------------------------------------------- host SDK


def host_sdk_root(explicit: str | None, device_file: str) -> Path | None:
    """The host QNN SDK: the device's qnn_sdk_host, else $QNN_SDK_ROOT, else None."""
    value = explicit or os.environ.get("QNN_SDK_ROOT")
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        where = f"{device_file}: qnn_sdk_host" if explicit else "QNN_SDK_ROOT"
        raise InputError(f"{where}: {root} is not a directory (the QNN SDK root, with bin/ and lib/)")
    return root


def sdk_version(root: Path) -> str:
    """The SDK's version from its sdk.yaml when present, else its directory name."""
    meta = root / "sdk.yaml"
    if meta.is_file():
        for line in meta.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "version" and value.strip():
                return value.strip()
    return root.name


def host_tool(root: Path, name: str) -> Path:
    path = root / "bin" / HOST_TRIPLE / name
    if not path.is_file():
        raise CompileError(
            f"{name} not found in the host QNN SDK (looked for {path}); install the SDK's "
            f"{HOST_TRIPLE} tools or point QNN_SDK_ROOT / qnn_sdk_host at a complete SDK"
        )
    return path


def missing_sdk_error(device: str, arch: str) -> CompileError:
    return CompileError(
        f"device '{device}': backend dsp (Hexagon {arch}) is prepared with the QNN SDK on this host, "
        f"and {CONVERTER} was not found: QNN_SDK_ROOT is not set and the device file has no "
        "qnn_sdk_host (the QNN HTP emulator makes HTP context binaries only)"
    )


def _tool_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    lib = str(root / "lib" / HOST_TRIPLE)
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    py = str(root / "lib" / "python")  # the converters are Python tools shipped in the SDK
    env["PYTHONPATH"] = py + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["QNN_SDK_ROOT"] = str(root)
    return env


def _run_tool(argv: Sequence[str | Path], root: Path, graph: str, log: Path, timeout: float) -> None:
    name = Path(argv[0]).name
    cmd = [str(a) for a in argv]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_tool_env(root))
    except subprocess.TimeoutExpired:
        raise CompileError(f"{name} did not finish within {timeout:g} s on graph '{graph}'") from None
    except OSError as exc:
        raise CompileError(f"{name} could not start on graph '{graph}': {exc}") from None
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-2:] or ["no output"]
        raise CompileError(
            f"{name} failed (exit {proc.returncode}) on graph '{graph}': {' | '.join(tail)} (log: {log})"
        )


def _aimet_files(qdq_onnx: Path, graph: str) -> tuple[Path, Path]:
    """AIMET's plain ONNX and .encodings, which quantize.py writes beside the QDQ ONNX."""
    stem = qdq_onnx.stem[: -len("_qdq")] if qdq_onnx.stem.endswith("_qdq") else qdq_onnx.stem
    plain, enc = qdq_onnx.with_name(f"{stem}.onnx"), qdq_onnx.with_name(f"{stem}.encodings")
    missing = [p.name for p in (plain, enc) if not p.is_file() or p == qdq_onnx]
    if missing:
        raise CompileError(
            f"graph '{graph}': the QNN converter needs AIMET's {' and '.join(missing)} beside "
            f"{qdq_onnx} (EdgeGate's quantize step writes them)"
        )
    return plain, enc


def prepare_with_sdk(
    graph: str,
    qdq_onnx: Path,
    out_dir: Path,
    *,
    root: Path,
    backend: str,
    triple: str,
    dsp_arch: str,
    soc_model: str | None,
    timeout: float = 1800.0,
) -> Prepared:
    """converter (AIMET encodings) -> model library -> (HTP) context binary, with the host SDK."""
    tools = [host_tool(root, CONVERTER), host_tool(root, MODEL_LIB_GENERATOR)]
    if backend == "htp":
        tools.append(host_tool(root, CONTEXT_GENERATOR))
    plain, enc = _aimet_files(qdq_onnx, graph)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"{graph}_qnn_prepare.log"
    log.write_text("")
    inputs, outputs = graph_io(plain)
    t0 = time.perf_counter()

    # 1. convert, with AIMET's encodings as overrides
    calib = out_dir / "calibration"
    calib.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    parts = []
    for t in inputs:
        raw = calib / f"{t.name}.raw"
        rng.uniform(-1.0, 1.0, t.shape).astype(np.float32).tofile(raw)
        parts.append(f"{t.name}:={raw}")
    input_list = out_dir / "calibration_input_list.txt"
    input_list.write_text(" ".join(parts) + "\n")
    cpp = out_dir / f"{graph}.cpp"
    _run_tool([tools[0], "--input_network", plain, "--quantization_overrides", enc,
               "--input_list", input_list, "--output_path", cpp], root, graph, log, timeout)
    weights = cpp.with_suffix(".bin")

    # 2. model library: for the board's triple (DSP runs it), or for this host (HTP context)
    lib_triple = HOST_TRIPLE if backend == "htp" else triple
    libs = out_dir / "model_libs"
    _run_tool([tools[1], "-c", cpp, "-b", weights, "-o", libs, "-t", lib_triple], root, graph, log, timeout)
    lib = libs / lib_triple / f"lib{graph}.so"
    if not lib.is_file():
        raise CompileError(f"{MODEL_LIB_GENERATOR} wrote no {lib} for graph '{graph}' (log: {log})")

    details: dict[str, Any] = {
        "prepared_with": f"QNN SDK {sdk_version(root)} on the host",
        "qnn_inputs": [t.to_json() for t in inputs],
        "qnn_outputs": [t.to_json() for t in outputs],
        "quantization_overrides": enc.name,
    }
    if backend == "dsp":
        artifact, flag = lib, "--model"
    else:
        # 3. context binary for the board's HTP, through the HTP backend extensions config
        ext = out_dir / "htp_backend_extensions.json"
        device: dict[str, Any] = {"dsp_arch": dsp_arch}
        if soc_model:
            device["soc_id"] = int(soc_model)
        ext.write_text(json.dumps({"devices": [device]}, indent=1))
        config = out_dir / "htp_context_config.json"
        config.write_text(json.dumps({"backend_extensions": {
            "shared_library_path": str(root / "lib" / HOST_TRIPLE / "libQnnHtpNetRunExtensions.so"),
            "config_file_path": str(ext),
        }}, indent=1))
        _run_tool([tools[2], "--model", lib, "--backend", root / "lib" / HOST_TRIPLE / "libQnnHtp.so",
                   "--binary_file", f"{graph}_ctx", "--output_dir", out_dir, "--config_file", config],
                  root, graph, log, timeout)
        artifact, flag = out_dir / f"{graph}_ctx.bin", "--retrieve_context"
        if not artifact.is_file():
            raise CompileError(f"{CONTEXT_GENERATOR} wrote no {artifact.name} for graph '{graph}' (log: {log})")
    details["prepare_ms"] = (time.perf_counter() - t0) * 1e3
    # The converter maps every node to a QNN op or fails; none is left to a host CPU.
    n = count_nodes(plain)
    return Prepared(artifact, (artifact,), flag, n, 0, details)


# ----------------------------------------------------------------------------- emulator


def prepare_with_emulator(
    name: str, graph: str, qdq_onnx: Path, out_dir: Path, *, htp_arch: int, soc_model: str | None
) -> Prepared:
    """The HTP emulator's QNN context binary (CPU fallback off: a board runs no ORT CPU ops)."""
    from edgegate.targets.local import QnnEmulatorTarget

    emulator = QnnEmulatorTarget(name, soc_model=soc_model, htp_arch=htp_arch, allow_cpu_fallback=False)
    c = emulator.compile(graph, qdq_onnx, out_dir)
    bins = [f for f in c.files if f.suffix == ".bin"]
    if len(bins) != 1:
        raise CompileError(f"{name}: graph '{graph}': expected one QNN context binary from the emulator, got {len(bins)}")
    inputs, outputs = graph_io(qdq_onnx)
    qnn = package_versions(["onnxruntime-qnn"]).get("onnxruntime-qnn", "?")
    details = {
        "prepared_with": f"onnxruntime-qnn {qnn} (QNN HTP emulator) context binary, HTP v{htp_arch}",
        "qnn_inputs": [t.to_json() for t in inputs],
        "qnn_outputs": [t.to_json() for t in outputs],
        "prepare_ms": c.compile_time_ms,
    }
    # The EP-context ONNX travels with the binary: qnn-net-run ignores it; it names the graph's I/O.
    others = tuple(f for f in c.files if f != bins[0])
    return Prepared(bins[0], (bins[0], *others), "--retrieve_context", c.npu_nodes, c.cpu_nodes, details)
