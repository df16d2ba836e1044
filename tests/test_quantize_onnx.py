"""ONNX source graphs (``onnx: path`` in a pipeline) quantize with aimet-onnx, the same AIMET
release as aimet-torch: the HTP config by arch, the pack's calibration batches, QDQ ONNX +
encodings, the same cache-key discipline; then compile fully on both emulated NPUs."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgegate.errors import InputError
from edgegate.run.models import GraphSource, load_torch_model

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_matrix.yaml"
RUN_CELLS = ROOT / "tests" / "fixtures" / "pipelines" / "run_cells.py"


def test_aimet_torch_and_aimet_onnx_import_together() -> None:
    """Both packages in one process (the run quantizes torch and ONNX graphs side by side)."""
    code = "import aimet_torch, aimet_onnx; print(aimet_torch.__version__, aimet_onnx.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_v, onnx_v = out.stdout.split()
    assert torch_v == onnx_v  # one AIMET release


def test_edgegate_never_imports_the_deprecated_aimet_common() -> None:
    """With both AIMET packages installed, ``import aimet_common`` raises ImportError (it cannot
    tell which one it aliases): EdgeGate names aimet_torch.common / aimet_onnx.common."""
    pattern = re.compile(r"^\s*(from|import)\s+aimet_common\b", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "edgegate").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_an_onnx_graph_cannot_feed_the_adversarial_search(tmp_path: Path) -> None:
    src = GraphSource("pnet", None, {}, None, tmp_path / "pnet.onnx", ("image",), ((1, 3, 12, 12),), ("prob", "reg"))
    with pytest.raises(InputError, match="model.graphs.pnet: the adversarial search needs a torch model"):
        load_torch_model(src)


# ----------------------------------------------------------------------------- slow


def _export_mtcnn(out: Path) -> dict[str, Path]:
    """The mini pipeline's three MTCNN graphs as ONNX files (what a user would bring)."""
    import torch

    from edgegate.zoo import mtcnn

    spec = yaml.safe_load(MINI.read_text())
    paths = {}
    for name, g in spec["model"]["graphs"].items():
        path = out / f"{name}.onnx"
        dummy = tuple(torch.zeros(i["shape"]) for i in g["inputs"])
        torch.onnx.export(getattr(mtcnn, name)().eval(), dummy, str(path), input_names=[i["name"] for i in g["inputs"]],
                          output_names=g["outputs"], opset_version=17, dynamo=False)
        paths[name] = path
    return paths


@pytest.fixture(scope="module")
def onnx_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """person_detect_matrix with every graph given as an ONNX file instead of a factory."""
    d = tmp_path_factory.mktemp("onnx_src")
    spec = yaml.safe_load(MINI.read_text())
    for name, path in _export_mtcnn(d).items():
        g = spec["model"]["graphs"][name]
        g.pop("factory")
        g["onnx"] = str(path)
    spec["name"] = "person_detect_onnx"
    spec["evaluation"]["promptpack"] = str(ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini")
    out = d / "person_detect_onnx.yaml"
    out.write_text(yaml.safe_dump(spec))
    return out


@pytest.mark.slow
def test_quantize_onnx_graph_writes_the_torch_paths_files(onnx_pipeline: Path, tmp_path: Path) -> None:
    """QDQ ONNX + self-contained plain ONNX + encodings 1.0.0; same bytes twice; the QDQ graph
    runs on ONNX Runtime CPU close to the FP32 graph."""
    import onnxruntime as ort

    from edgegate.run.quantize import QuantizeSettings
    from edgegate.run.quantize_onnx import quantize_onnx_graph

    src = onnx_pipeline.parent / "pnet.onnx"
    rng = np.random.default_rng(0)
    batches = [(rng.random((1, 3, 114, 170), dtype=np.float32),) for _ in range(2)]
    digests = []
    for run in ("a", "b"):
        q = quantize_onnx_graph(src, ["image"], batches, QuantizeSettings(config="htp_v73"), tmp_path / run, "pnet")
        assert sorted(p.name for p in (tmp_path / run).iterdir()) == ["pnet.encodings", "pnet.onnx", "pnet_qdq.onnx"]
        assert q.num_calibration_batches == 2
        files = (q.qdq_onnx, q.encodings, q.encodings_onnx)
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in files])
    assert digests[0] == digests[1]
    assert json.loads(q.encodings.read_text())["version"] == "1.0.0"
    x = {"image": batches[0][0]}
    fp32 = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, x)
    int8 = ort.InferenceSession(str(q.qdq_onnx), providers=["CPUExecutionProvider"]).run(None, x)
    assert [a.shape for a in int8] == [a.shape for a in fp32]
    assert np.abs(int8[0] - fp32[0]).max() < 0.1  # face probabilities within a few quantization steps


@pytest.mark.slow
@pytest.mark.parametrize("device", ["htp-sim", "htp-sim-v73"])
def test_onnx_sources_run_int8_fully_on_the_npu(onnx_pipeline: Path, device: str, tmp_path: Path) -> None:
    """In a fresh process per device (tests/fixtures/pipelines/run_cells.py says why)."""
    proc = subprocess.run(
        [sys.executable, str(RUN_CELLS), str(tmp_path / "home"), str(ROOT / "devices" / f"{device}.yaml"),
         str(onnx_pipeline)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.splitlines()[-1])
    assert r["error"] is None
    c = r["candidate"]
    assert c["npu_fraction"] == 1.0 and c["cpu_nodes"] == 0
    assert c["baseline_agreement"] >= 0.9
    for q in r["quantized"].values():
        assert q["key"]["aimet"].startswith("aimet-onnx 2.42")  # the engine is in the cache key
        assert q["key"]["threads"] == 1
