"""The host targets on small hand-built QDQ graphs: QNN placement, errors, benchmark worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgegate.errors import CompileError
from edgegate.metrics import Source
from edgegate.targets.local import CpuTarget, QnnEmulatorTarget


def _qdq_model(path: Path, *, with_det: bool) -> Path:
    """x -> Q/DQ -> Relu -> Q/DQ [-> Det]: every node but Det is something QNN HTP runs."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
        helper.make_node("Relu", ["xd"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"], name="q_r"),
        helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y" if not with_det else "rd"], name="dq_r"),
    ]
    out_shape: list[int] = [2, 2]
    if with_det:
        nodes.append(helper.make_node("Det", ["rd"], ["y"], name="det"))
        out_shape = []
    graph = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                     numpy_helper.from_array(np.array(0, np.uint8), "z")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _emulator(**kw) -> QnnEmulatorTarget:
    return QnnEmulatorTarget("htp-sim", soc_model=None, htp_arch=68, **kw)


def test_unsupported_op_is_a_compile_error_naming_it(tmp_path: Path) -> None:
    model = _qdq_model(tmp_path / "m.onnx", with_det=True)
    with pytest.raises(CompileError) as info:
        _emulator().compile("g", model, tmp_path / "out")
    assert str(info.value) == (
        "htp-sim: graph 'g': ops not supported by the QNN HTP backend: Det(det) (plus 1 "
        "Quantize/DequantizeLinear node(s) around them); 2 of 6 ONNX nodes would run on the host "
        "CPU; change the model, or set allow_cpu_fallback: true in the device file to accept that"
    )
    assert not list((tmp_path / "out").glob("*.bin"))  # the probe's context is not left behind


def test_fallback_allowed_records_placement(tmp_path: Path) -> None:
    model = _qdq_model(tmp_path / "m.onnx", with_det=True)
    c = _emulator(allow_cpu_fallback=True).compile("g", model, tmp_path / "out")
    assert (c.npu_nodes, c.cpu_nodes) == (4, 2)
    assert "Det(det)" in c.cpu_ops
    assert all(f.exists() for f in c.files) and any(f.suffix == ".bin" for f in c.files)


def test_full_placement_and_context_binary_runs(tmp_path: Path) -> None:
    model = _qdq_model(tmp_path / "m.onnx", with_det=False)
    target = _emulator()
    c = target.compile("g", model, tmp_path / "out")
    assert (c.npu_nodes, c.cpu_nodes, c.cpu_ops) == (5, 0, ())
    assert [f.suffix for f in c.files] == [".onnx", ".bin"]
    x = np.array([[0.013, 0.5], [1.0, 2.0]], np.float32)
    (y,) = target.open(c).run({"x": x})
    # The context binary computes what ONNX Runtime's CPU EP computes on the same QDQ graph,
    # within one quantization step (0.02).
    cpu = CpuTarget("cpu")
    (ref,) = cpu.open(cpu.compile("g", model, tmp_path / "cpu")).run({"x": x})
    assert y.shape == (2, 2)
    np.testing.assert_allclose(y, ref, atol=0.0201)


def test_benchmark_worker_keeps_every_sample_and_measures_memory(tmp_path: Path) -> None:
    model = _qdq_model(tmp_path / "m.onnx", with_det=False)
    for target in (CpuTarget("cpu"), _emulator()):
        c = target.compile("g", model, tmp_path / target.name)
        res = target.benchmark(
            [c], {"g": {"x": np.ones((2, 2), np.float32)}}, warmup=2, repeats=7, min_seconds=0.0,
            work_dir=tmp_path / f"bench-{target.name}",
        )
        assert res.source is target.source
        (t,) = res.timings
        assert t.graph == "g" and len(t.samples_ms) == 7 and all(s > 0 for s in t.samples_ms)
        assert t.load_time_ms > 0
        assert res.peak_memory_mb is not None and res.peak_memory_mb >= 0
        assert "VmHWM" in res.memory_method
    assert CpuTarget("cpu").source is Source.HOST_CPU and _emulator().source is Source.HOST_EMULATOR


def test_processes_and_interleaved_benchmark(tmp_path: Path) -> None:
    from edgegate.targets.base import benchmark_interleaved

    model = _qdq_model(tmp_path / "m.onnx", with_det=False)
    cpu = CpuTarget("cpu")
    c = cpu.compile("g", model, tmp_path / "cpu")
    feeds = {"g": {"x": np.ones((2, 2), np.float32)}}
    res = cpu.benchmark([c], feeds, warmup=1, repeats=4, min_seconds=0.0, work_dir=tmp_path / "b", processes=3)
    (t,) = res.timings
    assert len(t.samples_ms) == 12 and t.process_ids == (0,) * 4 + (1,) * 4 + (2,) * 4
    assert res.details["processes"] == 3 and len(res.details["per_process_peak_memory_mb"]) == 3
    assert res.peak_memory_mb == max(res.details["per_process_peak_memory_mb"])
    # three fresh workers really ran: one request file each
    assert sorted(p.parent.name for p in (tmp_path / "b").glob("*/bench_request.json")) == [
        "process0", "process1", "process2"]
    a, b = benchmark_interleaved(cpu, ([c], feeds), ([c], feeds), warmup=0, repeats=2, min_seconds=0.0,
                                 processes=3, work_dir=tmp_path / "ab")
    assert a.timings[0].process_ids == b.timings[0].process_ids == (0, 0, 1, 1, 2, 2)
    # order A B, B A, A B: the workers' request files were written in that order
    order = sorted((tmp_path / "ab").glob("*/bench_request.json"), key=lambda p: p.stat().st_mtime_ns)
    assert [p.parent.name for p in order] == ["a0", "b0", "b1", "a1", "a2", "b2"]


def test_min_seconds_extends_the_timed_loop() -> None:
    from edgegate.targets.bench_worker import timed_loop

    calls = []

    def run(_, feeds):
        calls.append(1)

    samples = timed_loop(run, {}, warmup=3, repeats=2, min_seconds=0.05)
    assert len(calls) == 3 + len(samples) and len(samples) > 2
