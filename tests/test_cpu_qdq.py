"""The CPU target runs a quantized (QDQ) graph as its Q/DQ ops: ONNX Runtime's fusion of QDQ groups
into int8 kernels is off (it turned MobileNetV2's INT8 outputs into noise, cosine 0.17 to FP32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgegate.targets.local import CpuTarget


def _qdq_conv(path: Path) -> Path:
    """A Conv whose input, weight and output are quantized: the group ORT fuses into QLinearConv."""
    rng = np.random.RandomState(0)
    inits = [
        numpy_helper.from_array(rng.randint(-127, 127, (4, 3, 3, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.array(0.02, np.float32), "w_s"),
        numpy_helper.from_array(np.array(0, np.int8), "w_z"),
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(128, np.uint8), "z"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"]),
    ]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_cpu_compile_keeps_qdq_ops_unfused(tmp_path: Path) -> None:
    target = CpuTarget("cpu")
    compiled = target.compile("g", _qdq_conv(tmp_path / "g.onnx"), tmp_path / "out")
    ops = {n.op_type for n in onnx.load(str(compiled.artifact)).graph.node}
    assert "QLinearConv" not in ops and {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert "unfused" in target.describe()["runtime"]  # part of the compile cache key
    x = np.random.RandomState(1).randn(1, 3, 8, 8).astype(np.float32)
    (y,) = target.open(compiled).run({"x": x})
    assert y.shape == (1, 4, 8, 8) and np.isfinite(y).all()


def test_cpu_compile_saves_only_portable_optimizations(tmp_path: Path) -> None:
    """ORT_ENABLE_ALL would save NCHWc layout nodes (ReorderInput/ReorderOutput), which ORT calls
    hardware-specific and whose names differed between two fresh processes."""
    import subprocess
    import sys

    rng = np.random.RandomState(0)
    w = numpy_helper.from_array(rng.randn(16, 3, 3, 3).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                           helper.make_node("Relu", ["c"], ["y"])], "conv",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 32, 32])], [w])
    src = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), src)
    code = ("import sys; from pathlib import Path; from edgegate.targets.local import CpuTarget; "
            "print(CpuTarget('cpu').compile('g', Path(sys.argv[1]), Path(sys.argv[2])).artifact)")
    arts = [Path(subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / f"p{i}")], check=True,
                                capture_output=True, text=True).stdout.strip()) for i in (1, 2)]
    assert arts[0].read_bytes() == arts[1].read_bytes()
    ops = {n.op_type for n in onnx.load(str(arts[0])).graph.node}
    assert not ops & {"ReorderInput", "ReorderOutput"}, ops
