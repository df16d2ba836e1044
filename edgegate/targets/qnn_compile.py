"""One QNN emulator compile in a fresh process: ``python -m edgegate.targets.qnn_compile REQ RES``.

The context binary QNN writes depends on what the process compiled before it: R-Net's binary
came out with three different sha256 when compiled alone, after P-Net, and after O-Net and
P-Net, in one process (the graph inside is named from a process-wide count). A compile in a
process of its own depends only on its inputs, so the run, the reproducibility check's fresh
process, a fleet cell and a test suite's worker all write the same bytes for the same graph.

The request names the model, the context file to write, the provider options and whether
CPU fallback is allowed; the result is ``{"error": null}`` or the session's error text.
Kept free of EdgeGate's heavier imports so it starts fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def model_source(onnx_path: Path) -> str | bytes:
    """The model as bytes when it is self-contained: ONNX Runtime names the QNN partition
    (and so the context binary's graph) after a hash that includes the model's *path*, so
    compiling from bytes is what makes context binaries byte-reproducible across runs."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in m.graph.initializer):
        return str(onnx_path)
    return onnx_path.read_bytes()


def main(argv: list[str]) -> int:
    from edgegate.targets.ort_runtime import open_session

    req = json.loads(Path(argv[0]).read_text())
    try:
        open_session(model_source(Path(req["model"])), "qnn", req["provider_options"],
                     allow_cpu_fallback=req["allow_cpu_fallback"], context_file=req["context_file"])
        error = None
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail type; the parent words the error
        error = str(exc)
    Path(argv[1]).write_text(json.dumps({"error": error}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
