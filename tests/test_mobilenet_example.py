"""The README's "Your own model and data", end to end on a few photos of the shipped pack:
`edgegate pack create` -> `edgegate init` -> `edgegate validate` -> `edgegate run` on htp-sim
with torchvision's MobileNetV2 (ImageNet weights), INT8 gated against FP32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from edgegate.cli import cli
from edgegate.zoo.mobilenet import imagenet_classes

ROOT = Path(__file__).parents[1]
PACK_IMAGES = ROOT / "promptpacks" / "mobilenet_v2" / "images"
# Labelled photos FP32 MobileNetV2 is sure of (so INT8 on a 3-image calibration agrees), and
# two unlabelled ones; a path's folder is its ImageNet class, as in the shipped pack.
PHOTOS = (
    "espresso/coffee.jpg", "espresso/coffee-left.jpg", "espresso/coffee-cup.jpg",
    "tripod/camera.jpg", "tripod/camera-tripod.jpg",
    "tabby/chelsea.jpg", "tabby/chelsea-left.jpg",
    "astronaut-patch.jpg", "clock.jpg",
)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGEGATE_DEVICES_DIR", str(ROOT / "devices"))
    monkeypatch.delenv("EDGEGATE_DB", raising=False)


def _invoke(*args: str) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps stderr apart by default
    return runner.invoke(cli, list(args))


@pytest.mark.slow
def test_pack_create_init_run_on_htp_sim(tmp_path: Path) -> None:
    for rel in PHOTOS:
        (Path("photos") / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACK_IMAGES / rel, Path("photos") / rel)
    Path("imagenet_classes.txt").write_text("\n".join(imagenet_classes()) + "\n", encoding="utf-8")

    created = _invoke("pack", "create", "photos", "--out", "packs/photos", "--classes-file", "imagenet_classes.txt",
                      "--calibration", "3", "--license", "CC0 / public domain", "--source", "EdgeGate test photos")
    assert created.exit_code == 0, created.output
    assert "splits: eval 6, calibration 3; 1000 classes; 7 labelled samples" in created.stdout

    init = _invoke("init", "edgegate.zoo.mobilenet:mobilenet_v2", "--input", "image:1x3x224x224",
                   "--pack", "packs/photos", "--task", "image-classification", "--out", "mobilenet.yaml")
    assert init.exit_code == 0, init.output
    spec = yaml.safe_load(Path("mobilenet.yaml").read_text())
    assert spec["model"]["adapter_options"] == {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": 256, "crop": 224,
    }
    assert spec["quantization"]["bn_fold"] is True and spec["quantization"]["cle"] is True
    assert _invoke("validate", "mobilenet.yaml").exit_code == 0

    db = f"sqlite:///{tmp_path / 'eg.db'}"
    run = _invoke("run", "mobilenet.yaml", "--db", db, "--quiet", "--evidence", "never", "--json-out", "report.json")
    assert run.exit_code == 0, run.output  # every gate the init wrote holds
    report = json.loads(Path("report.json").read_text())
    fp32, int8 = report["baseline"]["metrics"], report["candidate"]["metrics"]
    assert int8["npu_fraction"]["value"] == 1.0  # the whole graph on the HTP, no CPU fallback
    assert int8["top1_agreement"]["value"] >= 0.9
    assert int8["top1_accuracy"]["value"] == fp32["top1_accuracy"]["value"]
    assert int8["inference_time_ms"]["source"] == "host-emulator"
    assert {g["expr"]: g["status"] for g in report["gates"]} == {
        "top1_agreement >= 0.9": "pass", "top1_accuracy >= 0.99 * baseline": "pass", "npu_fraction >= 1.0": "pass",
    }
