"""`edgegate init`: a pipeline YAML for a model file and a pack that `edgegate validate` passes;
bad input is one exact error line, exit 2, and nothing written; no overwrite without --force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner, Result
from fakes.pack_data import image_tree
from onnx import TensorProto, helper, numpy_helper

from edgegate.cli import cli

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths in messages, as a user types them
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGEGATE_DEVICES_DIR", str(ROOT / "devices"))


def _invoke(*args: str) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps stderr apart by default
    return runner.invoke(cli, list(args))


def _error(result: Result) -> str:
    """Exit 2, nothing on stdout, exactly one error line on stderr (no traceback)."""
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0][len("error: "):]


def tiny_classifier(path: Path, *, classes: int = 3, batch: int | str = 1, input_name: str = "image") -> Path:
    """An ONNX classifier: Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, 32x32 RGB in."""
    rng = np.random.default_rng(0)
    weights = {
        "conv_w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv_b": np.zeros(4, np.float32),
        "fc_w": rng.standard_normal((classes, 4)).astype(np.float32),
        "fc_b": np.zeros(classes, np.float32),
    }
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w", "conv_b"], ["c"], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _pack(source: str, out: str, *extra: str, calibration: int = 3) -> Path:
    result = _invoke("pack", "create", source, "--out", out, "--calibration", str(calibration), *extra)
    assert result.exit_code == 0, result.output
    return Path(out)


@pytest.fixture()
def labelled_pack() -> Path:
    image_tree(Path("photos"), {"cat": 3, "dog": 3, "fox": 3})
    return _pack("photos", "packs/pets")


@pytest.fixture()
def model() -> Path:
    return tiny_classifier(Path("models/tiny.onnx"))


def test_init_writes_a_pipeline_that_validates(model: Path, labelled_pack: Path) -> None:
    result = _invoke("init", "models/tiny.onnx", "--pack", "packs/pets", "--task", "image-classification",
                     "--out", "pipelines/tiny.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        ("wrote pipelines/tiny.yaml: pipeline tiny, image-classification adapter, device htp-sim "
         "(AIMET config htp_v66), 3 gate(s)"),
        "next: edgegate validate pipelines/tiny.yaml && edgegate run pipelines/tiny.yaml",
    ]
    text = Path("pipelines/tiny.yaml").read_text()
    spec = yaml.safe_load(text)
    assert spec["name"] == "tiny"
    assert spec["model"]["adapter"] == "image-classification"
    assert spec["model"]["adapter_options"] == {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": 37, "crop": 32,
    }
    assert spec["model"]["graphs"] == {
        "classifier": {"onnx": "../models/tiny.onnx", "inputs": [{"name": "image", "shape": [1, 3, 32, 32]}],
                       "outputs": ["logits"]},
    }
    assert spec["quantization"]["config"] is None
    assert spec["quantization"]["calibration"] == {"split": "calibration", "samples": 3}
    assert spec["device"] == "htp-sim"
    assert spec["evaluation"] == {"promptpack": "../packs/pets", "split": "eval", "scorers": ["classification"]}
    assert spec["gates"] == ["top1_agreement >= 0.9", "top1_accuracy >= 0.99 * baseline", "npu_fraction >= 1.0"]
    # the comments a user reads: defaults spelled out, the arch's AIMET config, host timings
    assert "    # channel_order: RGB" in text and "    # layout: NCHW" in text
    assert "# from the device's arch: htp_v66 on htp-sim" in text
    assert '  # - "inference_time_ms <= 20"' in text and "emulator timings are host timings" in text

    check = _invoke("validate", "pipelines/tiny.yaml")
    assert check.exit_code == 0, check.output
    assert check.stdout.startswith("ok: tiny: 1 graph(s) (classifier), device htp-sim (qnn-emulator, "
                                   "AIMET config htp_v66), PromptPack pets 1.0.0")


def test_unlabelled_pack_cpu_device_and_dynamic_batch(labelled_pack: Path) -> None:
    image_tree(Path("loose"), {"x": 5})
    for p in Path("loose/x").iterdir():
        p.rename(Path("loose") / p.name)
    Path("loose/x").rmdir()
    _pack("loose", "packs/loose")
    tiny_classifier(Path("dyn.onnx"), batch="N")
    result = _invoke("init", "dyn.onnx", "--pack", "packs/loose", "--task", "image-classification",
                     "--out", "dyn.yaml", "--input", "image:1x3x32x32", "--device", "cpu", "--name", "dyn-cpu")
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(Path("dyn.yaml").read_text())
    assert spec["name"] == "dyn-cpu"
    assert spec["model"]["graphs"]["classifier"]["inputs"] == [{"name": "image", "shape": [1, 3, 32, 32]}]
    assert spec["gates"] == ["top1_agreement >= 0.9"]  # no labels, no NPU on a cpu device
    assert "# from the device's arch: default on cpu" in Path("dyn.yaml").read_text()
    assert _invoke("validate", "dyn.yaml").exit_code == 0


def test_no_overwrite_without_force(model: Path, labelled_pack: Path) -> None:
    Path("p.yaml").write_text("mine\n")
    args = ("init", "models/tiny.onnx", "--pack", "packs/pets", "--task", "image-classification", "--out", "p.yaml")
    assert _error(_invoke(*args)) == "--out p.yaml: already exists; pass --force to replace it"
    assert Path("p.yaml").read_text() == "mine\n"
    assert _invoke(*args, "--force").exit_code == 0
    assert yaml.safe_load(Path("p.yaml").read_text())["name"] == "tiny"


def test_torchscript_needs_input_shapes(labelled_pack: Path) -> None:
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(pixels).mean((2, 3)))

    with pytest.warns(FutureWarning):  # torch.jit.trace's deprecation notice
        torch.jit.trace(Net().eval(), torch.zeros(1, 3, 32, 32)).save("net.pt")
    base = ("init", "net.pt", "--pack", "packs/pets", "--task", "image-classification", "--out", "ts.yaml")
    assert _error(_invoke(*base)) == (
        "net.pt: input 'pixels': a TorchScript model keeps no input shapes; give it with --input "
        "pixels:DIMS (e.g. pixels:1x3x224x224)")
    assert not Path("ts.yaml").exists()
    result = _invoke(*base, "--input", "pixels:1x3x32x32")
    assert result.exit_code == 0, result.output
    graph = yaml.safe_load(Path("ts.yaml").read_text())["model"]["graphs"]["classifier"]
    assert graph == {"torchscript": "net.pt", "inputs": [{"name": "pixels", "shape": [1, 3, 32, 32]}],
                     "outputs": ["logits"]}
    assert _invoke("validate", "ts.yaml").exit_code == 0


def test_bad_input_is_one_line_and_writes_nothing(model: Path, labelled_pack: Path) -> None:
    tiny_classifier(Path("dyn.onnx"), batch="N")
    tiny_classifier(Path("ten.onnx"), classes=10)
    Path("garbage.onnx").write_bytes(b"not a model")
    Path("notes.txt").write_text("hello\n")
    Path("texts.csv").write_text("text,label\n" + "".join(f"utterance {i},a\n" for i in range(6)))
    _pack("texts.csv", "packs/texts")
    pets = ("--pack", "packs/pets", "--out", "out.yaml")
    cases = {
        ("models/tiny.onnx", "--task", "image-classifcation", *pets):
            "--task image-classifcation: unknown task (did you mean 'image-classification' or "
            "'text-classification'?); tasks: image-classification, object-detection, text-classification, "
            "text-embedding",
        ("dyn.onnx", "--task", "image-classification", *pets):
            "dyn.onnx: input 'image' has dynamic dimensions [?, 3, 32, 32]; give its shape with "
            "--input image:1x3x32x32",
        ("garbage.onnx", "--task", "image-classification", *pets):
            "garbage.onnx: cannot read it as ONNX (Error parsing message with type 'onnx.ModelProto')",
        ("missing.onnx", "--task", "image-classification", *pets): "missing.onnx: no such file",
        ("notes.txt", "--task", "image-classification", *pets):
            "notes.txt: not a model init reads: an .onnx (ONNX) or .pt/.pth (TorchScript) file, or a torch "
            "factory package.module:function",
        ("models/tiny.onnx", "--task", "text-classification", *pets):
            "--pack packs/pets: an image-classification pack; --task text-classification needs a "
            "text-classification pack (edgegate pack create)",
        ("models/tiny.onnx", "--task", "image-classification", "--pack", "packs/texts", "--out", "out.yaml"):
            "--pack packs/texts: a text-classification pack; --task image-classification needs an "
            "image-classification pack (edgegate pack create)",
        ("models/tiny.onnx", "--task", "image-classification", "--input", "img:1x3x32x32", *pets):
            "--input img: the model has no input 'img' (did you mean 'image'?); its inputs: image",
        ("models/tiny.onnx", "--task", "image-classification", "--input", "image:1x3x64x64", *pets):
            "--input image:1x3x64x64: the model's input 'image' is [1, 3, 32, 32]",
        ("models/tiny.onnx", "--task", "image-classification", "--input", "image:1x3x", *pets):
            "--input image:1x3x: expected NAME:DIMS with positive dimensions, e.g. image:1x3x224x224",
        ("models/tiny.onnx", "--task", "image-classification", "--device", "nosuch", *pets):
            "--device nosuch: unknown device 'nosuch'; known: cpu, htp-sim, htp-sim-v73, iq9075-aihub, "
            "qcs6490-aihub, rb5-adb, rb5-aihub, rb5-ssh, s24-aihub",
        ("ten.onnx", "--task", "image-classification", *pets):
            "--pack packs/pets: lists 3 classes but the model gives 10 class scores; rebuild the pack with "
            "--classes-file (the model's class names in output order)",
        ("subprocess:Popen", "--task", "image-classification", *pets):
            "MODEL 'subprocess:Popen': refused: 'subprocess' is part of the Python standard library, which "
            "holds no models or adapters",
        ("models/tiny.onnx", "--task", "text-embedding", "--pack", "packs/texts", "--out", "out.yaml"):
            "models/tiny.onnx: no tokenizer.json beside it; text-embedding needs the model's tokenizer.json "
            "(pass --tokenizer PATH)",
    }
    for args, message in cases.items():
        assert _error(_invoke("init", *args)) == message, args
        assert not Path("out.yaml").exists(), args


def test_object_detection_from_a_coco_pack() -> None:
    from fakes.pack_data import small_coco

    annotations = small_coco(Path("coco"))
    _pack(str(annotations), "packs/coco", "--images", "coco/images", calibration=1)
    classes = len(yaml.safe_load(Path("packs/coco/manifest.yaml").read_text())["classes"])
    rng = np.random.default_rng(0)
    graph = helper.make_graph(  # a YOLO-style head: [1, 4+C, N] from one strided Conv
        [helper.make_node("Conv", ["images", "w"], ["c"], strides=[8, 8]),
         helper.make_node("Reshape", ["c", "shape"], ["output0"])],
        "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + classes, 64])],
        [numpy_helper.from_array(rng.standard_normal((4 + classes, 3, 8, 8)).astype(np.float32), "w"),
         numpy_helper.from_array(np.array([1, 4 + classes, 64], np.int64), "shape")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "yolo.onnx")
    result = _invoke("init", "yolo.onnx", "--pack", "packs/coco", "--task", "object-detection", "--out", "det.yaml")
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(Path("det.yaml").read_text())
    assert spec["model"]["adapter_options"] == {"decoder": "yolo"}
    assert spec["evaluation"]["scorers"] == ["coco-detection"]
    assert spec["gates"] == ["map50 >= 0.98 * baseline", "detection_agreement >= 0.95", "npu_fraction >= 1.0"]
    assert _invoke("validate", "det.yaml").exit_code == 0


def tiny_text_classifier(path: Path, *, vocab: int, length: int = 16, classes: int = 2) -> Path:
    """An ONNX text classifier as exports have it: int64 token ids in, Gather an embedding,
    mean over tokens, Gemm to logits."""
    rng = np.random.default_rng(1)
    weights = {
        "emb": (rng.standard_normal((vocab, 8)) * 0.1).astype(np.float32),
        "fc_w": rng.standard_normal((classes, 8)).astype(np.float32),
        "fc_b": np.zeros(classes, np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
        helper.make_node("ReduceMean", ["e"], ["m"], axes=[1], keepdims=0),
        helper.make_node("Gemm", ["m", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tinytext", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, length])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_int64_token_ids_from_init_to_a_run() -> None:
    """A text model whose graph takes int64 token ids: init writes the dtype, validate passes,
    and the run quantizes and scores it (FP32 vs INT8 on the host CPU)."""
    from edgegate.zoo.minilm import model_dir

    tokenizer = model_dir() / "tokenizer.json"
    model = tiny_text_classifier(Path("models/text.onnx"), vocab=30522)
    rows = ["text,label\n"] + [f"please {w} now {i},{lab}\n" for i in range(6)
                                for w, lab in (("stop", "halt"), ("go", "move"))]
    Path("cmds.csv").write_text("".join(rows))
    _pack("cmds.csv", "packs/cmds", "--support", "2", calibration=3)
    made = _invoke("init", str(model), "--pack", "packs/cmds", "--task", "text-classification",
                   "--tokenizer", str(tokenizer), "--device", "cpu", "--out", "text.yaml")
    assert made.exit_code == 0, made.output
    spec = yaml.safe_load(Path("text.yaml").read_text())
    (graph,) = spec["model"]["graphs"].values()
    assert graph["inputs"] == [{"name": "input_ids", "shape": [1, 16], "dtype": "int64"}]
    assert _invoke("validate", "text.yaml").exit_code == 0
    ran = _invoke("run", "text.yaml", "--quiet", "--evidence", "never", "--db", f"sqlite:///{Path('eg.db').absolute()}")
    assert ran.exit_code in (0, 1), ran.output  # gates decide; no error on the way
    assert "cosine_agreement" in ran.stdout
