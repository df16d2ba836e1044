"""The generic adapters configured in YAML (presets): preprocessing, decoding, tokenization,
and every bad option as one ``file:line: model.adapter_options.<field>: problem`` error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgegate.cli import cli
from edgegate.config import load_pipeline
from edgegate.config.pipeline import ADAPTER_PRESETS
from edgegate.errors import InputError, SpecError
from edgegate.packs.adapters import (
    DeclaresInputs,
    ImageAdapter,
    SampleAdapter,
    get_preset,
    predict_sample,
    preset_names,
)
from edgegate.packs.adapters.detection import letterbox
from edgegate.packs.adapters.text import mean_pool, token_feeds
from edgegate.packs.sample import Sample
from edgegate.run.context import make_adapter
from edgegate.zoo import minilm as mini

ROOT = Path(__file__).parents[1]
VISION_PACK = ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini"  # classes: [face]
TEXT_PACK = ROOT / "tests" / "fixtures" / "packs" / "robot_intents_mini"
TOKENIZER = mini.model_dir() / "tokenizer.json"

Runner = Callable[[str, dict[str, np.ndarray]], list[np.ndarray]]


def pipeline(tmp_path: Path, adapter: str, options: str, inputs: str, outputs: str = "[out]",
             pack: Path = VISION_PACK) -> Path:
    """A pipeline file whose one graph ``net`` declares ``inputs``; options indented under
    adapter_options (one option per line, so each has its own line)."""
    text = f"""name: generic
model:
  adapter: {adapter}
  adapter_options:
{options}
  graphs:
    net:
      factory: edgegate.zoo.minilm:minilm
      inputs: {inputs}
      outputs: {outputs}
quantization:
  calibration: {{split: {"support" if pack == TEXT_PACK else "calibration"}}}
device: cpu
evaluation:
  promptpack: {pack}
  scorers: [classification]
"""
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def build(tmp_path: Path, adapter: str, options: str, inputs: str, **kw: Any) -> Any:
    return make_adapter(load_pipeline(pipeline(tmp_path, adapter, options, inputs, **kw)))


def spec_error(tmp_path: Path, adapter: str, options: str, inputs: str, **kw: Any) -> str:
    with pytest.raises(SpecError) as info:
        build(tmp_path, adapter, options, inputs, **kw)
    return str(info.value)


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def image_sample(rgb: np.ndarray, tmp_path: Path, target: dict[str, Any] | None = None) -> Sample:
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    return Sample("s0", "eval", path, target or {}, "0" * 64)


def text_sample(text: str, label: str | None = None) -> Sample:
    return Sample("t0", "eval", None, {"label": label} if label else {}, "0" * 64, text)


def const_runner(*outputs: np.ndarray, seen: list[dict[str, np.ndarray]] | None = None) -> Runner:
    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if seen is not None:
            seen.append(feeds)
        return [np.asarray(o) for o in outputs]

    return run


RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
NCHW = "[{name: image, shape: [1, 3, 224, 224]}]"


# ----------------------------------------------------------------------------- registry


def test_presets_are_the_names_a_pipeline_accepts() -> None:
    assert preset_names() == list(ADAPTER_PRESETS)
    for name in ADAPTER_PRESETS:
        assert get_preset(name).name == name


def test_unknown_preset_is_a_spec_error_with_a_hint(tmp_path: Path) -> None:
    path = pipeline(tmp_path, "image-clasification", "    {}", NCHW)
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    assert str(info.value) == (
        f"{path}:3: model.adapter: unknown adapter preset 'image-clasification' (did you mean "
        "'image-classification' or 'text-classification'?); presets: image-classification, object-detection, text-classification, "
        "text-embedding, or 'package.module:Class' for your own adapter"
    )


def test_custom_adapter_reference_still_works(tmp_path: Path) -> None:
    path = pipeline(tmp_path, "edgegate.zoo.minilm:MiniLMAdapter", "    seq_len: 16",
                    "[{name: input_ids, shape: [1, 16]}]")
    adapter = make_adapter(load_pipeline(path))
    assert isinstance(adapter, mini.MiniLMAdapter) and adapter.seq_len == 16


# ----------------------------------------------------------------------------- image-classification


def test_image_preprocessing_matches_torchvision(tmp_path: Path) -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    adapter = build(tmp_path, "image-classification",
                    f"    resize: 256\n    crop: 224\n    mean: {mean}\n    std: {std}", NCHW)
    ours = adapter.preprocess(PHOTO)
    tv = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize(mean, std)])
    theirs = tv(Image.fromarray(PHOTO)).numpy()[None]
    assert ours.shape == (1, 3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert isinstance(adapter, DeclaresInputs) and isinstance(adapter, ImageAdapter)
    assert not isinstance(adapter, SampleAdapter)
    assert adapter.expected_inputs() == {"net": {"image": (1, 3, 224, 224)}}


def test_image_bgr_nhwc_and_exact_resize(tmp_path: Path) -> None:
    adapter = build(tmp_path, "image-classification", "    channel_order: BGR\n    layout: NHWC\n    scale: 1.0",
                    "[{name: image, shape: [1, 30, 40, 3]}]")
    x = adapter.preprocess(PHOTO)
    assert x.shape == (1, 30, 40, 3)
    small = np.asarray(Image.fromarray(PHOTO).resize((40, 30), Image.Resampling.BILINEAR), dtype=np.float32)
    np.testing.assert_array_equal(x[0], small[..., ::-1])


def test_image_prediction_with_class_names_file(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("cat\ndog\n\nbird\n")
    adapter = build(tmp_path, "image-classification", "    class_names: classes.txt\n    output: probabilities",
                    "[{name: image, shape: [1, 3, 8, 8]}]")
    sample = image_sample(PHOTO, tmp_path, {"label": "dog"})
    pred = predict_sample(adapter, sample, const_runner(np.array([[0.1, 0.7, 0.2]], np.float32)))
    assert pred["logits"].tolist() == pytest.approx([0.1, 0.7, 0.2])
    assert pred["top_labels"].tolist() == ["dog", "bird", "cat"]
    assert str(pred["output"]) == "probabilities"
    with pytest.raises(InputError, match="gives 4 class scores but the class names are 3"):
        predict_sample(adapter, sample, const_runner(np.zeros((1, 4), np.float32)))
    with pytest.raises(InputError, match=r"graph output 'out' has shape \[1, 3, 2\]; expected class scores"):
        predict_sample(adapter, sample, const_runner(np.zeros((1, 3, 2), np.float32)))


def test_image_default_class_names_are_the_pack_classes(tmp_path: Path) -> None:
    adapter = build(tmp_path, "image-classification", "    {}", "[{name: image, shape: [1, 3, 8, 8]}]")
    pred = adapter.predict(PHOTO[:20, :20], const_runner(np.array([[3.0]], np.float32)))
    assert pred["top_labels"].tolist() == ["face"]


def test_image_with_a_real_network_end_to_end(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 3)).eval()
    adapter = build(tmp_path, "image-classification", "    class_names: [a, b, c]",
                    "[{name: image, shape: [1, 3, 16, 16]}]")

    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert graph == "net" and list(feeds) == ["image"]
        with torch.no_grad():
            return [net(torch.from_numpy(feeds["image"])).numpy()]

    pred = adapter.predict(PHOTO, run)
    x = np.asarray(Image.fromarray(PHOTO).resize((16, 16), Image.Resampling.BILINEAR), np.float32) / 255.0
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())).numpy()[0]
    np.testing.assert_allclose(pred["logits"], want, atol=1e-5)
    assert pred["top_labels"][0] == "abc"[int(np.argmax(want))]


@pytest.mark.parametrize(
    ("options", "inputs", "field", "problem"),
    [
        ("    resise: 256", NCHW, "resise", "unknown field 'resise' (allowed: "),
        ("    crop: 200", NCHW, "crop",
         "crop 200 feeds [1, 3, 200, 200] but model.graphs.net.inputs[0].shape is [1, 3, 224, 224]"),
        ("    resize: [100, 120]", NCHW, "resize",
         "resize [100, 120] feeds [1, 3, 100, 120] but model.graphs.net.inputs[0].shape is [1, 3, 224, 224]"),
        ("    resize: 256", NCHW, "resize", "a shorter-side resize gives images of varying size; add crop"),
        ("    layout: NCHW", "[{name: image, shape: [1, 224, 224, 3]}]", "layout",
         ("model.graphs.net.inputs[0].shape [1, 224, 224, 3] is not a batch of one 3-channel NCHW image; "
          "the model looks NHWC (set layout: NHWC)")),
        ("    mean: [0.5, 0.5]", NCHW, "mean", "needs at least 3 items, got 2"),
        ("    dtype: uint8\n    scale: 1.0", NCHW, "scale", "dtype uint8 feeds raw pixels 0..255; remove it"),
        ("    dtype: uint8", NCHW, "dtype", "feeds uint8 but model.graphs.net.inputs[0].dtype is float32"),
        ("    input: img", NCHW, "input", "graph 'net' has no input 'img' (inputs: image)"),
        ("    output_name: logits", NCHW, "output_name", "graph 'net' has no output 'logits' (outputs: out)"),
        ("    graph: encoder", NCHW, "graph", "'encoder' is not a graph of model.graphs (graphs: net)"),
        ("    class_names: nope.txt", NCHW, "class_names", "file not found: "),
        ("    class_names: [a, b, a]", NCHW, "class_names", "duplicate class name 'a'"),
        ("    scale: '0.5'", NCHW, "scale", "input should be a valid number"),
    ],
)
def test_image_option_errors_name_file_line_and_field(
    tmp_path: Path, options: str, inputs: str, field: str, problem: str
) -> None:
    err = spec_error(tmp_path, "image-classification", options, inputs)
    path = tmp_path / "p.yaml"
    key = options.strip().splitlines()[-1].split(":")[0]
    prefix = f"{path}:{line_of(path, key + ':')}: model.adapter_options.{field}: "
    assert err.startswith(prefix + problem.split("(allowed")[0]), err
    assert problem in err


def test_validate_cli_reports_one_error_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # devices/ is found walking up from the cwd
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))
    path = pipeline(tmp_path, "image-classification", "    crop: 200", NCHW)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        (f"error: {path}:5: model.adapter_options.crop: crop 200 feeds [1, 3, 200, 200] but "
         "model.graphs.net.inputs[0].shape is [1, 3, 224, 224]")
    ]
    ok = pipeline(tmp_path, "image-classification", "    crop: 224", NCHW)
    result = CliRunner().invoke(cli, ["validate", str(ok)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: generic: 1 graph(s) (net)")


# ----------------------------------------------------------------------------- object-detection


def detector(tmp_path: Path, options: str, outputs: str = "[out]", size: int = 64) -> Any:
    return build(tmp_path, "object-detection", options, f"[{{name: images, shape: [1, 3, {size}, {size}]}}]",
                 outputs=outputs)


def test_letterbox_geometry_maps_boxes_back() -> None:
    rgb = np.zeros((50, 100, 3), np.uint8)
    canvas, geo = letterbox(rgb, 64, 64, [114, 114, 114], Image.Resampling.BILINEAR)
    assert canvas.shape == (64, 64, 3) and (geo.left, geo.top) == (0, 16)
    assert canvas[0, 0].tolist() == [114, 114, 114] and canvas[16, 0].tolist() == [0, 0, 0]
    back = geo.to_image(np.array([[0.0, 16.0, 64.0, 48.0], [-5.0, 0.0, 32.0, 32.0]]))
    np.testing.assert_allclose(back, [[0, 0, 100, 50], [0, 0, 50, 25]])


def yolo_output(cands: list[tuple[float, float, float, float, list[float]]]) -> np.ndarray:
    """[1, 4+C, N] from (cx, cy, w, h, class scores) per candidate."""
    return np.array([[cx, cy, w, h, *s] for cx, cy, w, h, s in cands], np.float32).T[None]


def test_yolo_decode_threshold_nms_and_class_names(tmp_path: Path) -> None:
    adapter = detector(tmp_path, "    decoder: yolo\n    class_names: [face, cat]\n    score_threshold: 0.3")
    out = yolo_output([
        (32, 32, 20, 10, [0.9, 0.1]),   # kept
        (33, 32, 20, 10, [0.8, 0.0]),   # same class, overlaps the first: suppressed
        (32, 32, 20, 10, [0.0, 0.7]),   # another class: kept (NMS is per class)
        (10, 10, 4, 4, [0.2, 0.1]),     # below the threshold
    ])
    rgb = np.zeros((50, 100, 3), np.uint8)  # letterboxed: x * 100/64, (y - 16) * 100/64
    pred = adapter.predict(rgb, const_runner(out))
    s = 100 / 64
    np.testing.assert_allclose(pred["boxes"], [[22 * s, 11 * s, 42 * s, 21 * s]] * 2, rtol=1e-6)
    assert pred["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert pred["labels"].tolist() == ["face", "cat"]
    assert pred["classes"].tolist() == [0, -1]  # 'cat' is no class of the pack
    assert pred["boxes"].dtype == np.float32 and pred["classes"].dtype == np.int64
    agnostic = detector(tmp_path, "    decoder: yolo\n    class_names: [face, cat]\n    class_agnostic: true")
    assert agnostic.predict(rgb, const_runner(out))["labels"].tolist() == ["face"]


def test_yolo_transposed_layout_and_wrong_layout(tmp_path: Path) -> None:
    out = yolo_output([(32, 32, 20, 10, [0.9])])
    bnc = detector(tmp_path, "    decoder: yolo\n    yolo_layout: BNC\n    resize: stretch")
    pred = bnc.predict(np.zeros((64, 64, 3), np.uint8), const_runner(out.transpose(0, 2, 1)))
    np.testing.assert_allclose(pred["boxes"], [[22, 27, 42, 37]])
    bcn = detector(tmp_path, "    decoder: yolo")
    with pytest.raises(InputError) as info:
        bcn.predict(np.zeros((64, 64, 3), np.uint8), const_runner(np.zeros((1, 84, 8400), np.float32)))
    assert str(info.value) == (
        "object-detection (yolo): graph output 'out' has shape [1, 84, 8400]; expected [1, 4+C, N] "
        "with C = 1 classes (class_names)"
    )


def test_ssd_yxyx_normalised_with_background(tmp_path: Path) -> None:
    adapter = detector(tmp_path, "    decoder: ssd\n    box_format: yxyx\n    normalized: true\n"
                       "    background: true\n    score_activation: softmax\n    resize: stretch",
                       outputs="[boxes, scores]")
    boxes = np.array([[[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.1, 0.1]]], np.float32)
    logits = np.array([[[0.0, 5.0], [5.0, 0.0]]], np.float32)  # second is background
    pred = adapter.predict(np.zeros((128, 128, 3), np.uint8), const_runner(boxes, logits))
    np.testing.assert_allclose(pred["boxes"], [[64, 32, 128, 96]])
    assert pred["scores"][0] == pytest.approx(1 / (1 + np.exp(-5.0)), rel=1e-5)
    with pytest.raises(InputError, match=r"graph output 'scores' has shape \[1, 2, 3\]; expected scores"):
        adapter.predict(np.zeros((8, 8, 3), np.uint8), const_runner(boxes, np.zeros((1, 2, 3), np.float32)))


def test_decoded_outputs_and_max_detections(tmp_path: Path) -> None:
    adapter = detector(tmp_path, "    decoder: decoded\n    resize: stretch\n    max_detections: 1\n"
                       "    class_names: [dog, face]", outputs="[boxes, scores, classes]")
    boxes = np.array([[[0, 0, 10, 10], [20, 20, 40, 40]]], np.float32)
    pred = adapter.predict(np.zeros((64, 64, 3), np.uint8),
                           const_runner(boxes, np.array([[0.5, 0.9]], np.float32), np.array([[1.0, 0.0]], np.float32)))
    assert pred["labels"].tolist() == ["dog"] and pred["classes"].tolist() == [-1]
    np.testing.assert_allclose(pred["boxes"], [[20, 20, 40, 40]])
    with pytest.raises(InputError, match="holds class id 7, but there are 2 class names"):
        adapter.predict(np.zeros((64, 64, 3), np.uint8),
                        const_runner(boxes, np.array([[0.5, 0.9]]), np.array([[7.0, 0.0]])))


def test_no_detections_is_an_empty_prediction(tmp_path: Path) -> None:
    adapter = detector(tmp_path, "    decoder: yolo")
    pred = adapter.predict(np.zeros((64, 64, 3), np.uint8), const_runner(yolo_output([(5, 5, 2, 2, [0.1])])))
    assert pred["boxes"].shape == (0, 4) and pred["scores"].shape == (0,) and pred["labels"].shape == (0,)


@pytest.mark.parametrize(
    ("options", "outputs", "field", "problem"),
    [
        ("    decoder: yolov8", "[out]", "decoder", "input should be 'yolo', 'ssd' or 'decoded'"),
        ("    score_threshold: 0.5", "[out]", None, "field required"),
        ("    decoder: yolo\n    box_format: yxyx", "[out]", "box_format", "only for decoder ssd or decoded, not yolo"),
        ("    decoder: ssd\n    resize: stretch\n    pad_color: [0, 0, 0]", "[a, b]", "pad_color",
         "only for resize: letterbox"),
        ("    decoder: ssd", "[out]", "outputs", "needs 2 graph outputs (boxes, scores) but graph 'net' declares 1"),
        ("    decoder: decoded\n    outputs: [b, s, x]", "[b, s, c]", "outputs", "graph 'net' has no output 'x'"),
        ("    decoder: yolo\n    nms_iou: 0", "[out]", "nms_iou", "input should be greater than 0"),
    ],
)
def test_detection_option_errors(tmp_path: Path, options: str, outputs: str, field: str | None, problem: str) -> None:
    err = spec_error(tmp_path, "object-detection", options, "[{name: images, shape: [1, 3, 64, 64]}]", outputs=outputs)
    where = f"model.adapter_options.{field}" if field else "model.adapter_options.decoder"
    assert f": {where}: {problem}" in err, err


# ----------------------------------------------------------------------------- text


MINILM_INPUTS = "[" + ", ".join(f"{{name: {n}, shape: [1, 16]}}" for n in mini.INPUT_NAMES) + "]"


def test_text_embedding_matches_the_minilm_adapter(tmp_path: Path) -> None:
    adapter = build(tmp_path, "text-embedding", f"    tokenizer: {TOKENIZER}", MINILM_INPUTS,
                    outputs="[token_embeddings]", pack=TEXT_PACK)
    zoo = mini.MiniLMAdapter(seq_len=16)
    assert adapter.expected_inputs()["net"] == zoo.expected_inputs()["encoder"]
    encoder = mini.minilm(layers=1)

    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [encoder(*(torch.from_numpy(feeds[n]) for n in mini.INPUT_NAMES)).numpy()]

    for text in ("Move forward two meters, please.", "stop", "a " * 40):
        ours = adapter.predict_sample(text_sample(text), run)["embedding"]
        theirs = zoo.predict_sample(text_sample(text), run)["embedding"]
        np.testing.assert_array_equal(ours, theirs)


def test_text_feeds_fixed_length_and_input_mapping(tmp_path: Path) -> None:
    adapter = build(tmp_path, "text-classification",
                    f"    tokenizer: {TOKENIZER}\n    inputs: {{input_ids: ids, attention_mask: mask}}\n"
                    "    class_names: [go, stop]",
                    "[{name: ids, shape: [1, 8]}, {name: mask, shape: [1, 8]}]", outputs="[logits]", pack=TEXT_PACK)
    seen: list[dict[str, np.ndarray]] = []
    pred = adapter.predict_sample(text_sample("stop", "stop"), const_runner(np.array([[0.2, 1.5]]), seen=seen))
    assert list(seen[0]) == ["ids", "mask"]
    assert seen[0]["ids"].tolist() == [[101, 2644, 102, 0, 0, 0, 0, 0]]  # [CLS] stop [SEP], padded
    assert seen[0]["mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    assert pred["top_labels"].tolist() == ["stop", "go"] and "embedding" not in pred
    long = adapter.predict_sample(text_sample("go " * 30), const_runner(np.array([[0.2, 1.5]]), seen=seen))
    assert seen[1]["mask"].tolist() == [[1] * 8] and seen[1]["ids"][0, -1] == 102  # truncated, [SEP] kept
    assert long["logits"].dtype == np.float32
    with pytest.raises(InputError, match="has no text"):
        adapter.predict_sample(Sample("i", "eval", Path("x.png"), {}, "0" * 64), const_runner())


def test_text_pooling_cls_and_layout_errors(tmp_path: Path) -> None:
    adapter = build(tmp_path, "text-embedding", f"    tokenizer: {TOKENIZER}\n    pooling: cls\n    normalize: false",
                    "[{name: input_ids, shape: [1, 4]}]", outputs="[hidden]", pack=TEXT_PACK)
    tokens = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    assert adapter.predict_sample(text_sample("hi"), const_runner(tokens))["embedding"].tolist() == [0, 1, 2]
    with pytest.raises(InputError) as info:
        adapter.predict_sample(text_sample("hi"), const_runner(np.zeros((1, 5, 3))))
    assert str(info.value) == (
        "text-embedding: graph output 'hidden' has shape [1, 5, 3]; pooling cls expects token embeddings [1, 4, D]"
    )


def test_shared_token_helpers() -> None:
    feeds = token_feeds([101, 7, 102], 5, pad_id=9)
    assert feeds["input_ids"].tolist() == [[101, 7, 102, 9, 9]]
    assert feeds["position_ids"].tolist() == [[0, 1, 2, 3, 4]]
    pooled = mean_pool(np.array([[3.0, 4.0], [1.0, 1.0], [9.0, 9.0]]), np.array([1, 1, 0]))
    np.testing.assert_allclose(pooled, np.array([2.0, 2.5]) / np.linalg.norm([2.0, 2.5]), rtol=1e-6)


@pytest.mark.parametrize(
    ("options", "inputs", "field", "problem"),
    [
        ("    tokenizer: missing/tokenizer.json", "[{name: input_ids, shape: [1, 8]}]", "tokenizer", "file not found: "),
        ("    max_length: 16", "[{name: input_ids, shape: [1, 8]}]", "max_length",
         "max_length 16 feeds [1, 16] but model.graphs.net.inputs[0].shape is [1, 8]"),
        ("", "[{name: input_ids, shape: [1, 8]}, {name: extra, shape: [1, 8]}]", "inputs",
         "graph input 'extra' is not fed: map one of input_ids, attention_mask, token_type_ids, position_ids to it"),
        ("    inputs: {input_ids: tokens}", "[{name: input_ids, shape: [1, 8]}]", "inputs.input_ids",
         "graph 'net' has no input 'tokens' (inputs: input_ids)"),
        ("    inputs: {ids: input_ids}", "[{name: input_ids, shape: [1, 8]}]", "inputs.ids",
         "input should be 'input_ids', 'attention_mask', 'token_type_ids' or 'position_ids'"),
        ("    normalize: true", "[{name: input_ids, shape: [1, 8]}]", "normalize", "only for embeddings"),
        ("    pooling: max", "[{name: input_ids, shape: [1, 8]}]", "pooling", "input should be 'none', 'cls' or 'mean'"),
    ],
)
def test_text_option_errors(tmp_path: Path, options: str, inputs: str, field: str, problem: str) -> None:
    opts = f"    tokenizer: {TOKENIZER}\n{options}" if "tokenizer" not in options else options
    err = spec_error(tmp_path, "text-classification", opts, inputs, pack=TEXT_PACK)
    assert f": model.adapter_options.{field}: {problem}" in err, err
    assert err.startswith(str(tmp_path / "p.yaml") + ":")


def test_bad_tokenizer_file_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    err = spec_error(tmp_path, "text-embedding", "    tokenizer: tokenizer.json", "[{name: input_ids, shape: [1, 8]}]",
                     pack=TEXT_PACK)
    assert f"{tmp_path / 'p.yaml'}:5: model.adapter_options.tokenizer: cannot load {tmp_path / 'tokenizer.json'}: " in err


def test_preset_and_pack_modality_must_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))
    path = pipeline(tmp_path, "image-classification", "    {}", NCHW, pack=TEXT_PACK)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        (f"error: {path}:3: model.adapter: the image-classification adapter reads vision samples but "
         "PromptPack 'robot_intents_mini' is text (intent-classification)")
    ]
