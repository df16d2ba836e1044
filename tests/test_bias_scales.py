"""Per-channel int32 biases on the QNN EP's grid (input scale x weight scale): AIMET's export put
MobileNetV2's classifier bias on its own grid (|bias| / 2^31), which ONNX Runtime's CPU kernels read
exactly but the QNN EP does not (v73 logits at cosine 0.03 to FP32; 0.987 once aligned)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgegate.run.qnn_config import align_bias_scales
from edgegate.targets.ort_runtime import open_session

C, K = 16, 32
X_SCALE = np.float32(0.02)


def _gemm(path: Path, *, per_channel: bool, aimet_style_bias: bool) -> Path:
    rng = np.random.RandomState(0)
    w_scale = (rng.rand(C) * 0.01 + 0.001).astype(np.float32) if per_channel else np.float32(0.005)
    bias = (rng.randn(C) * 0.05).astype(np.float32)
    if aimet_style_bias:  # every value at the int32 edge, as AIMET exported the classifier
        b_scale = (np.abs(bias) / (2**31 - 1)).astype(np.float32)
    else:
        b_scale = (X_SCALE * np.broadcast_to(w_scale, (C,))).astype(np.float32)
    b_q = np.clip(np.rint(bias / b_scale), -(2**31), 2**31 - 1).astype(np.int32)
    if not per_channel:
        b_scale, b_q = np.float32(X_SCALE * w_scale), np.rint(bias / (X_SCALE * w_scale)).astype(np.int32)
    axis = {"axis": 0} if per_channel else {}
    inits = [
        numpy_helper.from_array(rng.randint(-127, 127, (C, K)).astype(np.int8), "wq"),
        numpy_helper.from_array(np.asarray(w_scale), "ws"),
        numpy_helper.from_array(np.zeros(C, np.int8) if per_channel else np.int8(0), "wz"),
        numpy_helper.from_array(np.asarray(b_q), "bq"),
        numpy_helper.from_array(np.asarray(b_scale), "bs"),
        numpy_helper.from_array(np.zeros(C, np.int32) if per_channel else np.int32(0), "bz"),
        numpy_helper.from_array(np.array(X_SCALE), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(np.array(0.05, np.float32), "ys"),
        numpy_helper.from_array(np.array(128, np.uint8), "yz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], **axis),
        helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"], **axis),
        helper.make_node("Gemm", ["xd", "wd", "bd"], ["c"], transB=1),
        helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"]),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]), path)
    return path


def _bias(path: Path) -> np.ndarray:
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    return inits["bq"].astype(np.float64) * inits["bs"].astype(np.float64)


def test_aimet_style_per_channel_bias_is_requantized_on_the_ep_grid(tmp_path: Path) -> None:
    path = _gemm(tmp_path / "g.onnx", per_channel=True, aimet_style_bias=True)
    before = _bias(path)
    x = np.random.RandomState(1).randn(1, K).astype(np.float32)
    cpu_before = open_session(str(path), "cpu", {}).run(None, {"x": x})[0]
    assert align_bias_scales(path) == ["bd"]
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    np.testing.assert_allclose(inits["bs"], X_SCALE * inits["ws"], rtol=1e-6)
    np.testing.assert_allclose(_bias(path), before, atol=float(X_SCALE * inits["ws"].max()))  # the same bias
    cpu_after = open_session(str(path), "cpu", {}).run(None, {"x": x})[0]
    np.testing.assert_allclose(cpu_after, cpu_before, atol=0.05 + 1e-6)  # one output step at most
    assert align_bias_scales(path) == []  # already on the grid: nothing to do


def test_biases_on_the_grid_and_per_tensor_biases_are_left_byte_identical(tmp_path: Path) -> None:
    for name, per_channel in (("pc.onnx", True), ("pt.onnx", False)):
        path = _gemm(tmp_path / name, per_channel=per_channel, aimet_style_bias=per_channel is False)
        data = path.read_bytes()
        assert align_bias_scales(path) == [] and path.read_bytes() == data
