"""Opt-in: a tiny graph on real Qualcomm AI Hub (compile, profile, inference), when credentials
are present: EDGEGATE_AIHUB_TOKEN, or the client's config (QAIHUB_CLIENT_INI or
~/.qai_hub/client.ini). It submits three small jobs to the hosted farm and takes minutes.
EDGEGATE_AIHUB_LIVE_DEVICE picks the device file (default devices/rb5-aihub.yaml)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _credentials() -> str | None:
    if os.environ.get("EDGEGATE_AIHUB_TOKEN"):
        return "EDGEGATE_AIHUB_TOKEN"
    ini = Path(os.path.expanduser(os.environ.get("QAIHUB_CLIENT_INI", "~/.qai_hub/client.ini")))
    return str(ini) if ini.is_file() else None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        _credentials() is None,
        reason="live AI Hub test: no credentials (set EDGEGATE_AIHUB_TOKEN, or run `qai-hub configure`, "
        "or set QAIHUB_CLIENT_INI) - it would submit real jobs",
    ),
]


def test_tiny_graph_on_real_aihub(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgegate.metrics import Source
    from edgegate.config import load_device
    from edgegate.targets.aihub import AihubTarget

    w = numpy_helper.from_array(np.random.RandomState(0).randn(8, 3, 3, 3).astype(np.float32) * 0.1, "w")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "edgegate_live", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])], [w],
    )
    path = tmp_path / "edgegate_live.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)

    device = load_device(os.environ.get("EDGEGATE_AIHUB_LIVE_DEVICE", "rb5-aihub"), devices_dir=ROOT / "devices")
    target = AihubTarget(device)
    c = target.compile("edgegate_live", path, tmp_path / "out")
    bench = target.benchmark([c], {}, warmup=0, repeats=1, min_seconds=0, work_dir=tmp_path / "run")
    assert bench.source is Source.AIHUB_PROFILE and bench.timings[0].samples_ms[0] > 0
    feeds = [{"x": np.random.RandomState(i).rand(1, 3, 32, 32).astype(np.float32)} for i in range(2)]
    outs = target.run_batch(c, feeds)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for f, o in zip(feeds, outs):
        np.testing.assert_allclose(o[0].reshape(-1), ref.run(None, f)[0].reshape(-1), atol=0.05)
