"""Reproducibility: fresh processes give byte-identical artifacts; a perturbed run is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgegate.artifacts import ArtifactCache
from edgegate.run.context import load_context
from edgegate.run.runners import collect_graph_inputs, cpu_runner
from edgegate.run.stages import export_graphs
from edgegate.progress import Progress
from edgegate.run.reproduce import compare_artifacts, first_json_difference, start_workers

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"


def test_first_json_difference_names_the_tensor() -> None:
    a = {"activation_encodings": [{"name": "conv1", "scale": 0.1}, {"name": "conv2", "scale": 0.2}]}
    b = {"activation_encodings": [{"name": "conv1", "scale": 0.1}, {"name": "conv2", "scale": 0.25}]}
    assert first_json_difference(a, b) == "activation_encodings['conv2'].scale: 0.2 vs 0.25"
    assert first_json_difference(a, a) is None


def test_compare_artifacts_reports_first_differing_artifact(tmp_path: Path) -> None:
    def files(tag: str, enc_scale: float) -> dict:
        d = tmp_path / tag
        d.mkdir()
        (d / "g.encodings").write_text(json.dumps({"param_encodings": [{"name": "w", "scale": enc_scale}]}))
        (d / "g_qdq.onnx").write_bytes(b"same")
        (d / "ctx.bin").write_bytes(b"bin")
        return {"g": {"encodings": str(d / "g.encodings"), "qdq_onnx": str(d / "g_qdq.onnx"), "compiled": [str(d / "ctx.bin")]}}

    same = compare_artifacts([("a", files("a", 0.5)), ("b", files("b", 0.5))])
    assert same.reproducible and same.first_difference is None and len(same.checked) == 3
    diff = compare_artifacts([("a", files("c", 0.5)), ("b", files("d", 0.6))])
    assert not diff.reproducible
    assert diff.first_difference == (
        "g: encodings g.encodings differs (a vs b): first difference at param_encodings['w'].scale: 0.5 vs 0.6"
    )


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("repro-home")
    ctx = load_context(MINI, device="cpu", home=home)
    fp32 = export_graphs(ctx, ArtifactCache(home / "artifacts"))
    samples = ctx.pack.samples("calibration")
    return collect_graph_inputs(ctx.adapter, cpu_runner(fp32), samples, Progress(quiet=True), "calibration")


@pytest.fixture(scope="module")
def three_workers(calibration, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Three fresh processes side by side: two as the run asks, the third fed the calibration
    batches in reverse order."""
    return start_workers(MINI, "cpu", calibration, tmp_path_factory.mktemp("workers"),
                         compile_in=(True, True, False), perturb={2: "reverse-calibration"}).wait()


@pytest.mark.slow
def test_fresh_processes_are_byte_identical(three_workers) -> None:
    a, b, _ = three_workers
    res = compare_artifacts([("process 1", a), ("process 2", b)])
    assert res.reproducible, res.first_difference
    assert {r["artifact"] for r in res.checked} == {"encodings", "qdq_onnx", "compiled"}


@pytest.mark.slow
def test_perturbed_calibration_order_is_detected(three_workers) -> None:
    a, _, c = three_workers
    res = compare_artifacts([("process 1", a), ("process 3", c)])
    assert not res.reproducible
    # AIMET's tf_enhanced histograms depend on the order batches arrive in: the encodings
    # are the first artifact to differ, and the report names the tensor.
    assert res.first_difference.startswith("pnet: encodings pnet.encodings differs (process 1 vs process 3)")
    assert "first difference at" in res.first_difference
    assert "compiled" not in c["pnet"]  # a worker asked not to compile does not


def test_encodings_do_not_depend_on_the_callers_thread_count(tmp_path: Path) -> None:
    # With 2 torch threads AIMET's calibration sums floats in another order than with 1 and a
    # scale moves by an ulp: the reproducibility gate failed `make run` that way. Quantization
    # pins its own thread count, so the caller's does not matter (and is given back).
    import hashlib

    import numpy as np
    import torch

    from edgegate.run.quantize import QuantizeSettings, quantize_graph
    from edgegate.zoo import mtcnn

    rng = np.random.default_rng(0)
    batches = [(rng.random((1, 3, 114, 170), dtype=np.float32) * 2 - 1,) for _ in range(8)]
    before = torch.get_num_threads()
    digests = []
    try:
        for n in (2, 1):
            torch.set_num_threads(n)
            q = quantize_graph(mtcnn.pnet(), ["image"], ["prob", "reg"], batches, QuantizeSettings(config="htp_v66"),
                               tmp_path / f"t{n}", "pnet")
            assert torch.get_num_threads() == n
            digests.append(hashlib.sha256(q.encodings.read_bytes()).hexdigest())
    finally:
        torch.set_num_threads(before)
    assert digests[0] == digests[1]
