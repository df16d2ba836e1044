from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgegate.errors import InputError, PackIntegrityError, SpecError, UnknownNameError
from edgegate.packs.promptpack import PromptPack, load_promptpack, sha256_file

REPO = Path(__file__).resolve().parent.parent
REAL_PACK = REPO / "promptpacks" / "person_detect"
MINI_PACK = REPO / "tests" / "fixtures" / "packs" / "person_detect_mini"


@pytest.fixture
def mini_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "pack"
    shutil.copytree(MINI_PACK, dst)
    return dst


def _edit_manifest(pack: Path, old: str, new: str) -> Path:
    manifest = pack / "manifest.yaml"
    text = manifest.read_text(encoding="utf-8")
    assert old in text
    manifest.write_text(text.replace(old, new, 1), encoding="utf-8")
    return manifest


def _line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {path}")


def test_real_pack_loads_and_matches_its_manifest() -> None:
    pack = load_promptpack(REAL_PACK)
    assert (pack.name, pack.version, pack.modality.value, pack.task.value) == (
        "person_detect",
        "1.0.0",
        "vision",
        "detection",
    )
    assert pack.splits == ["eval", "calibration"]
    eval_samples = pack.samples("eval")
    assert len(eval_samples) == 160
    assert len(pack.samples("calibration")) == 32
    n_faces = [len(s.target["boxes"]) for s in eval_samples]
    assert 0.18 <= n_faces.count(0) / len(n_faces) <= 0.27
    widths = np.concatenate([s.target["boxes"][:, 2] - s.target["boxes"][:, 0] for s in eval_samples])
    assert widths.min() >= 21.5 and widths.max() <= 70.5
    eval_hashes = {s.sha256 for s in eval_samples}
    assert not eval_hashes & {s.sha256 for s in pack.samples("calibration")}


def test_mini_pack_samples_and_images() -> None:
    pack = load_promptpack(MINI_PACK)
    assert pack.name == "person_detect_mini"
    samples = pack.samples("eval")
    assert [s.id for s in samples] == [f"eval-{i:04d}" for i in range(6)]
    with_faces = [s for s in samples if len(s.target["boxes"])]
    assert len(with_faces) >= 4 and len(samples) - len(with_faces) >= 1
    sample = samples[0]
    assert sample.split == "eval" and sample.image_path.is_absolute()
    assert sample.sha256 == sha256_file(sample.image_path)
    image = sample.load_image()
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8
    boxes = sample.target["boxes"]
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()


def test_manifest_path_accepted_and_digest_is_manifest_hash() -> None:
    a = load_promptpack(MINI_PACK)
    b = load_promptpack(MINI_PACK / "manifest.yaml", verify=False)
    expected = "sha256:" + hashlib.sha256((MINI_PACK / "manifest.yaml").read_bytes()).hexdigest()
    assert a.digest == b.digest == expected
    assert a.split_digest("eval") == b.split_digest("eval")
    assert a.split_digest("eval") != a.split_digest("calibration")
    assert isinstance(a, PromptPack)


def test_limit_and_unknown_split() -> None:
    pack = load_promptpack(MINI_PACK, verify=False)
    assert [s.id for s in pack.samples("eval", limit=2)] == ["eval-0000", "eval-0001"]
    assert pack.samples("eval", limit=0) == []
    assert len(pack.samples("calibration", limit=100)) == 4
    with pytest.raises(UnknownNameError) as info:
        pack.samples("test")
    assert str(info.value) == "pack 'person_detect_mini' has no split 'test'; splits: eval, calibration"
    with pytest.raises(UnknownNameError):
        pack.split_digest("val")


def test_changed_image_byte_is_an_integrity_error(mini_copy: Path) -> None:
    image = mini_copy / "images" / "eval" / "eval-0003.png"
    before = sha256_file(image)
    data = bytearray(image.read_bytes())
    data[-20] ^= 0xFF
    image.write_bytes(bytes(data))
    after = sha256_file(image)
    manifest = mini_copy / "manifest.yaml"
    with pytest.raises(PackIntegrityError) as info:
        load_promptpack(mini_copy)
    assert str(info.value) == (
        f"{manifest}: files.images/eval/eval-0003.png: sha256 mismatch "
        f"(manifest {before[:6]}..., file {after[:6]}...); rebuild the pack or restore the file"
    )
    load_promptpack(mini_copy, verify=False)  # hashes are only checked on request


def test_missing_listed_file_is_an_integrity_error(mini_copy: Path) -> None:
    (mini_copy / "images" / "calibration" / "calib-0002.png").unlink()
    with pytest.raises(PackIntegrityError, match=r"files\.images/calibration/calib-0002\.png: listed"):
        load_promptpack(mini_copy)


def test_sample_image_not_listed_in_files(mini_copy: Path) -> None:
    manifest = mini_copy / "manifest.yaml"
    lines = manifest.read_text(encoding="utf-8").splitlines(keepends=True)
    manifest.write_text("".join(l for l in lines if "eval-0001.png:" not in l), encoding="utf-8")
    with pytest.raises(PackIntegrityError) as info:
        load_promptpack(mini_copy)
    assert str(info.value) == (
        f"{mini_copy / 'eval.jsonl'}:2: image: 'images/eval/eval-0001.png' is not listed in "
        f"{manifest} files; rebuild the pack"
    )


def test_unknown_manifest_key_names_field_and_line(mini_copy: Path) -> None:
    manifest = _edit_manifest(mini_copy, "  dtype: uint8\n", "  dtype: uint8\n  channels: 3\n")
    with pytest.raises(SpecError) as info:
        load_promptpack(mini_copy)
    line = _line_of(manifest, "channels: 3")
    assert str(info.value) == f"{manifest}:{line}: input.channels: unknown key; remove it or check its spelling"
    assert (info.value.field, info.value.line) == ("input.channels", line)


def test_bad_value_names_field_and_line(mini_copy: Path) -> None:
    manifest = _edit_manifest(mini_copy, "modality: vision", "modality: audio")
    with pytest.raises(SpecError) as info:
        load_promptpack(mini_copy)
    assert str(info.value).startswith(f"{manifest}:{_line_of(manifest, 'modality: audio')}: modality: ")


def test_missing_samples_file(mini_copy: Path) -> None:
    (mini_copy / "eval.jsonl").unlink()
    manifest = mini_copy / "manifest.yaml"
    with pytest.raises(SpecError) as info:
        load_promptpack(mini_copy)
    line = _line_of(manifest, "samples: eval.jsonl")
    assert str(info.value) == f"{manifest}:{line}: splits.eval.samples: file 'eval.jsonl' not found"


def test_count_mismatch(mini_copy: Path) -> None:
    manifest = _edit_manifest(mini_copy, "count: 6", "count: 7")
    with pytest.raises(SpecError) as info:
        load_promptpack(mini_copy, verify=False)
    line = _line_of(manifest, "count: 7")
    assert str(info.value) == f"{manifest}:{line}: splits.eval.count: says 7 samples but 'eval.jsonl' has 6"


def test_unknown_scorer_in_manifest(mini_copy: Path) -> None:
    manifest = _edit_manifest(mini_copy, "- detection", "- detectoin")
    with pytest.raises(SpecError) as info:
        load_promptpack(mini_copy, verify=False)
    line = _line_of(manifest, "- detectoin")
    # the registry grows (issue 14's generic scorers); the closest name comes first
    message = str(info.value)
    assert message.startswith(f"{manifest}:{line}: scorers[0]: unknown scorer 'detectoin' (did you mean 'detection'")
    known = message.split("; known: ")[1].split(", ")
    assert {"detection", "intent", "language-model"} <= set(known) and known == sorted(known)


def test_not_a_pack(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="manifest not found"):
        load_promptpack(tmp_path)


def test_duplicate_manifest_key(mini_copy: Path) -> None:
    manifest = _edit_manifest(mini_copy, "version: 1.0.0\n", "version: 1.0.0\nversion: 1.0.1\n")
    with pytest.raises(SpecError) as info:
        load_promptpack(mini_copy, verify=False)
    line = _line_of(manifest, "version: 1.0.1")
    assert str(info.value) == f"{manifest}:{line}: version: duplicate key"


def test_bad_sample_line_names_jsonl_line(mini_copy: Path) -> None:
    samples = mini_copy / "eval.jsonl"
    lines = samples.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace('"boxes": [[', '"boxes": [[999, ', 1)
    samples.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_promptpack(mini_copy, verify=False)
    assert str(info.value).startswith(f"{samples}:3: boxes[0]: ")
    with pytest.raises(PackIntegrityError, match=r"files\.eval\.jsonl: sha256 mismatch"):
        load_promptpack(mini_copy)


# --- text packs ----------------------------------------------------------------------------

INTENTS_PACK = REPO / "promptpacks" / "robot_intents"
LM_PACK = REPO / "promptpacks" / "lm_tiny"
INTENTS_MINI = REPO / "tests" / "fixtures" / "packs" / "robot_intents_mini"


@pytest.fixture
def intents_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "intents"
    shutil.copytree(INTENTS_MINI, dst)
    return dst


def _build_script(pack: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"build_{pack.name}", pack / "build_pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_robot_intents_pack() -> None:
    pack = load_promptpack(INTENTS_PACK)
    assert (pack.modality.value, pack.task.value, pack.splits) == ("text", "intent-classification", ["support", "eval"])
    classes = pack.manifest.classes
    assert len(classes) == 12
    support, evaluation = pack.samples("support"), pack.samples("eval")
    assert (len(support), len(evaluation)) == (48, 288)
    assert all(sum(s.target["label"] == c for s in support) == 4 for c in classes)
    # Interleaved: any 12 consecutive eval samples from the start cover every intent once.
    assert sorted(s.target["label"] for s in evaluation[:12]) == sorted(classes)
    texts = [s.text for s in support + evaluation]
    assert len({t.lower().rstrip(".!?") for t in texts}) == len(texts) == 336
    sample = evaluation[0]
    assert sample.image_path is None and set(sample.target) == {"label"}
    assert sample.sha256 == hashlib.sha256(sample.text.encode("utf-8")).hexdigest()
    assert pack.split_digest("eval") != pack.split_digest("support")


def test_lm_tiny_pack() -> None:
    pack = load_promptpack(LM_PACK)
    assert (pack.modality.value, pack.task.value) == ("text", "language-modeling")
    evaluation, train = pack.samples("eval"), pack.samples("train")
    assert len(evaluation) == 200 and len(train) > 3000
    assert all(0 < len(s.text.encode("utf-8")) <= 64 and s.target == {} for s in evaluation + train)
    assert "PSF" in pack.manifest.sources[0].license


def test_text_sample_has_no_image() -> None:
    sample = load_promptpack(INTENTS_MINI).samples("eval")[0]
    with pytest.raises(InputError) as info:
        sample.load_image()
    assert str(info.value) == (
        "sample 'eval-0000' of split 'eval' is a text sample and has no image; "
        "read sample.text (a text adapter implements predict_sample)"
    )


def test_text_packs_rebuild_byte_identical(tmp_path: Path) -> None:
    intents = _build_script(INTENTS_PACK)
    intents.build(tmp_path / "ri", name="robot_intents_mini", support_cores=1, n_eval=12, seed=intents.DEFAULT_SEED)
    for rel in ("manifest.yaml", "support.jsonl", "eval.jsonl"):
        assert (tmp_path / "ri" / rel).read_bytes() == (INTENTS_MINI / rel).read_bytes(), rel
    lm = _build_script(LM_PACK)
    built_with = load_promptpack(LM_PACK, verify=False).manifest.build.environment["python"]
    import platform

    if platform.python_version() != built_with:
        pytest.skip(f"lm_tiny's text comes from Python {built_with}'s pydoc_data")
    lm.build(tmp_path / "lm", name="lm_tiny", n_eval=200, n_train=None, max_bytes=64, seed=lm.DEFAULT_SEED)
    for rel in ("manifest.yaml", "train.jsonl", "eval.jsonl"):
        assert (tmp_path / "lm" / rel).read_bytes() == (LM_PACK / rel).read_bytes(), rel


def test_intent_label_must_be_a_class(intents_copy: Path) -> None:
    samples = intents_copy / "eval.jsonl"
    lines = samples.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace('"label": "stop"', '"label": "fly"')
    samples.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_promptpack(intents_copy, verify=False)
    assert str(info.value).startswith(f"{samples}:4: label: 'fly' is not one of the manifest's classes (move_forward, ")
    with pytest.raises(PackIntegrityError, match=r"files\.eval\.jsonl: sha256 mismatch"):
        load_promptpack(intents_copy)


def test_text_record_fields_are_checked(intents_copy: Path) -> None:
    samples = intents_copy / "support.jsonl"
    lines = samples.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"label"', '"intent"')
    samples.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_promptpack(intents_copy, verify=False)
    assert str(info.value) == f"{samples}:2: label: required key is missing"


def test_text_input_unknown_key_names_field_and_line(intents_copy: Path) -> None:
    manifest = _edit_manifest(intents_copy, "  language: en\n", "  language: en\n  tokenizer: bert\n")
    with pytest.raises(SpecError) as info:
        load_promptpack(intents_copy, verify=False)
    line = _line_of(manifest, "tokenizer: bert")
    assert str(info.value) == f"{manifest}:{line}: input.tokenizer: unknown key; remove it or check its spelling"


def test_task_modality_and_classes_must_agree(intents_copy: Path) -> None:
    manifest = _edit_manifest(intents_copy, "modality: text", "modality: vision")
    with pytest.raises(SpecError) as info:
        load_promptpack(intents_copy, verify=False)
    line = _line_of(manifest, "task: intent")
    assert str(info.value) == f"{manifest}:{line}: task: task 'intent-classification' needs modality 'text', not 'vision'"
    _edit_manifest(intents_copy, "modality: vision", "modality: text")
    text = manifest.read_text(encoding="utf-8")
    start = text.index("classes:\n")
    end = text.index("sources:\n")
    manifest.write_text(text[:start] + text[end:], encoding="utf-8")
    with pytest.raises(SpecError, match="classes: task 'intent-classification' needs the list of its classes"):
        load_promptpack(intents_copy, verify=False)


def test_text_longer_than_max_chars(intents_copy: Path) -> None:
    manifest = _edit_manifest(intents_copy, "max_chars: 120", "max_chars: 10")
    with pytest.raises(SpecError) as info:
        load_promptpack(intents_copy, verify=False)
    assert "text: " in str(info.value) and "more than input.max_chars (10)" in str(info.value)
    assert manifest.is_file()


# --- the tasks of packs built from users' data (issue 14) -----------------------------------

SHIPPED_DIGESTS = {
    REAL_PACK: "sha256:067686fe7596309561962e0005109da165e5d7b62304a24d376b9b5d8256824e",
    INTENTS_PACK: "sha256:c0539d288cf870f4e62d5774cde6602270fc787f78a853257582bed1fc3a80c3",
    LM_PACK: "sha256:3ab84fd66de5aefc8168c008478a0e3ff072bd41221d0833ac689525964d457c",
    MINI_PACK: "sha256:415eeeca3f7ac397d895907135c98ea7721f57f1b187c3607b70e132638254e8",
}


@pytest.mark.parametrize("pack", list(SHIPPED_DIGESTS), ids=lambda p: p.name)
def test_shipped_packs_keep_their_digests(pack: Path) -> None:
    assert load_promptpack(pack).digest == SHIPPED_DIGESTS[pack]


def _hand_made_pack(root: Path, task: str, records: list[dict], *, classes: list[str],
                    input_spec: dict | None = None, images: dict[str, tuple[int, int]] | None = None) -> Path:
    """A one-split pack written by hand (not by pack create), for the loader's own checks."""
    import json

    import yaml
    from fakes.pack_data import make_image

    files = {}
    for n, (rel, size) in enumerate((images or {}).items()):
        files[rel] = sha256_file(make_image(root / rel, n, size))
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    files["eval.jsonl"] = sha256_file(root / "eval.jsonl")
    vision = task != "text-classification"
    manifest = {
        "name": "hand", "version": "0.1.0", "modality": "vision" if vision else "text", "task": task,
        "description": "by hand",
        "input": input_spec or ({"kind": "image", "color": "RGB", "dtype": "uint8"} if vision
                                else {"kind": "text", "language": "en"}),
        "splits": {"eval": {"samples": "eval.jsonl", "count": len(records)}},
        "scorers": [{"image-classification": "classification", "object-detection": "coco-detection"}.get(task, task)],
        "classes": classes, "files": files,
    }
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return root


def test_image_classification_records(tmp_path: Path) -> None:
    images = {"images/a.png": (40, 30), "images/b.png": (64, 48)}  # any size: no height/width in input
    records = [{"id": "a", "image": "images/a.png", "label": "cat"}, {"id": "b", "image": "images/b.png", "label": None}]
    pack = load_promptpack(_hand_made_pack(tmp_path, "image-classification", records, classes=["cat"], images=images))
    a, b = pack.samples("eval")
    assert (a.target, b.target) == ({"label": "cat"}, {})
    assert a.load_image().shape == (30, 40, 3) and b.load_image().shape == (48, 64, 3)
    assert pack.manifest.input.height is None and pack.manifest.input.width is None


def test_image_classification_label_must_be_a_class(tmp_path: Path) -> None:
    records = [{"id": "a", "image": "images/a.png", "label": "dog"}]
    root = _hand_made_pack(tmp_path, "image-classification", records, classes=[], images={"images/a.png": (8, 8)})
    with pytest.raises(SpecError) as info:
        load_promptpack(root)
    assert str(info.value) == f"{root / 'eval.jsonl'}:1: label: 'dog' is not one of the manifest's classes (the manifest lists none)"


def test_object_detection_records(tmp_path: Path) -> None:
    records = [{"id": "a", "image": "images/a.png", "boxes": [[1, 2, 10, 12], [0, 0, 5, 5]], "labels": ["car", "cat"]},
               {"id": "b", "image": "images/b.png", "boxes": [], "labels": []}]
    images = {"images/a.png": (20, 20), "images/b.png": (20, 20)}
    root = _hand_made_pack(tmp_path, "object-detection", records, classes=["cat", "car"], images=images)
    a, b = load_promptpack(root).samples("eval")
    assert a.target["boxes"].dtype == np.float32 and a.target["boxes"].shape == (2, 4)
    assert not a.target["boxes"].flags.writeable and a.target["labels"] == ["car", "cat"]
    assert b.target["boxes"].shape == (0, 4) and b.target["labels"] == []


@pytest.mark.parametrize(
    ("record", "field", "problem"),
    [
        ({"boxes": [[1, 2, 10, 12]], "labels": []}, "labels", "0 labels for 1 boxes (one label per box)"),
        ({"boxes": [[1, 2, 10, 12]], "labels": ["bus"]}, "labels[0]",
         "'bus' is not one of the manifest's classes (cat, car)"),
        ({"boxes": [[10, 2, 1, 12]], "labels": ["cat"]}, "boxes[0]", "box [10.0, 2.0, 1.0, 12.0] needs x2 > x1 and y2 > y1"),
    ],
)
def test_object_detection_record_problems(tmp_path: Path, record: dict, field: str, problem: str) -> None:
    records = [{"id": "a", "image": "images/a.png", **record}]
    root = _hand_made_pack(tmp_path, "object-detection", records, classes=["cat", "car"],
                           images={"images/a.png": (20, 20)})
    with pytest.raises(SpecError) as info:
        load_promptpack(root)
    assert str(info.value) == f"{root / 'eval.jsonl'}:1: {field}: {problem}"


def test_object_detection_needs_classes(tmp_path: Path) -> None:
    root = _hand_made_pack(tmp_path, "object-detection", [], classes=[])
    with pytest.raises(SpecError, match="classes: task 'object-detection' needs the list of its classes"):
        load_promptpack(root)


def test_text_classification_records(tmp_path: Path) -> None:
    records = [{"id": "1", "text": "great", "label": "pos"}, {"id": "2", "text": "meh"}]
    pack = load_promptpack(_hand_made_pack(tmp_path, "text-classification", records, classes=["neg", "pos"]))
    one, two = pack.samples("eval")
    assert (one.target, two.target, one.image_path) == ({"label": "pos"}, {}, None)
    assert two.sha256 == hashlib.sha256(b"meh").hexdigest()


def test_detection_keeps_its_fixed_image_size(mini_copy: Path) -> None:
    manifest = _edit_manifest(mini_copy, "  height: 120\n", "")
    with pytest.raises(SpecError) as info:
        load_promptpack(mini_copy, verify=False)
    assert str(info.value) == f"{manifest}:{_line_of(manifest, 'input:')}: input.height: task 'detection' needs the images' fixed height"
