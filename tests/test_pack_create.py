"""edgegate.packs.create: PromptPacks from image folders, COCO files and text tables."""

from __future__ import annotations

import os

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from fakes.pack_data import (
    coco_set,
    image_tree,
    make_image,
    real_photo_crops,
    small_coco,
    truncate,
    write_jsonl,
)

from edgegate.artifacts import sha256_file
from edgegate.errors import InputError
from edgegate.packs.create import PackCreateOptions, PackSourceError, create_pack
from edgegate.packs.manifest import Task
from edgegate.packs.promptpack import load_promptpack
from edgegate.packs.summary import verify_pack


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(pack: Path) -> dict:
    return yaml.safe_load((pack / "manifest.yaml").read_text(encoding="utf-8"))


def _refusal(opts: PackCreateOptions) -> list[str]:
    with pytest.raises(PackSourceError) as info:
        create_pack(opts)
    assert not opts.out.exists()
    assert [p.name for p in opts.out.parent.iterdir() if p.name.startswith(f".{opts.out.name}")] == []
    return info.value.problems


# --------------------------------------------------------------------------- image folders


def test_folder_tree_is_a_labelled_stratified_pack(tmp_path: Path) -> None:
    src = image_tree(tmp_path / "photos", {"cat": 8, "dog": 8, "bird": 4})
    made = create_pack(PackCreateOptions(source=src, out=tmp_path / "pack", calibration=5, eval=10, seed=3,
                                         license="CC0-1.0", attribution="drawn by the test"))
    assert (made.name, made.version, made.task) == ("pack", "1.0.0", Task.IMAGE_CLASSIFICATION)
    assert made.classes == ["bird", "cat", "dog"]  # folder names sorted, as torchvision's ImageFolder
    assert made.splits == {"eval": 10, "calibration": 5} and made.labelled == 15
    assert made.notes == ["5 of 20 samples are in no split (--calibration 5 + --eval 10)"]
    pack = load_promptpack(made.path)  # every sha256 checked
    assert pack.digest == made.digest
    m = pack.manifest
    assert m.scorers == ["classification"] and (m.input.height, m.input.width) == (32, 40)
    assert m.sources[0].license == "CC0-1.0" and m.sources[0].attribution == "drawn by the test"
    assert m.sources[0].role == "images" and m.sources[0].name == "photos"
    assert m.build.args == {"task": "image-classification", "calibration": 5, "eval": 10, "stratified": True}
    calib, evaluation = pack.samples("calibration"), pack.samples("eval")
    # stratified: 5 of 20 is 2 cats, 2 dogs, 1 bird; then 10 of the 15 left in proportion
    assert Counter(s.target["label"] for s in calib) == {"cat": 2, "dog": 2, "bird": 1}
    assert Counter(s.target["label"] for s in evaluation) == {"cat": 4, "dog": 4, "bird": 2}
    assert not {s.sha256 for s in calib} & {s.sha256 for s in evaluation}
    for s in calib + evaluation:
        assert s.id == f"{s.target['label']}/{s.image_path.name}"
        assert s.sha256 == sha256_file(s.image_path) == sha256_file(src / s.id)
    assert pack.manifest.files["eval.jsonl"] == sha256_file(made.path / "eval.jsonl")


def test_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    for i in range(6):
        make_image(tmp_path / "src" / f"img{i}.png", i, size=(30 + i, 20))  # sizes vary
    made = create_pack(PackCreateOptions(source=tmp_path / "src", out=tmp_path / "pack", calibration=2))
    pack = load_promptpack(made.path)
    assert pack.manifest.classes == [] and made.labelled == 0
    assert (pack.manifest.input.height, pack.manifest.input.width) == (None, None)
    assert "height" not in (made.path / "manifest.yaml").read_text()
    assert all(s.target == {} for s in pack.samples("eval") + pack.samples("calibration"))
    assert pack.manifest.build.args["stratified"] is False
    assert pack.manifest.description.startswith("Image classification, unlabelled (scored by agreement with FP32)")


def test_images_at_the_top_of_a_tree_are_unlabelled(tmp_path: Path) -> None:
    src = image_tree(tmp_path / "src", {"tench": 3})
    make_image(src / "street.png", 50)
    make_image(src / "sky.jpg", 51)
    (src / "README.txt").write_text("not a sample")
    (src / ".DS_Store").write_bytes(b"\0")
    made = create_pack(PackCreateOptions(source=src, out=tmp_path / "pack", calibration=1))
    assert made.labelled == 3 and made.classes == ["tench"]
    assert made.notes == ["skipped 1 file(s) that are not images by their extension: README.txt"]
    labels = {s.id: s.target.get("label") for split in ("eval", "calibration")
              for s in load_promptpack(made.path).samples(split)}
    assert labels == {"street.png": None, "sky.jpg": None, "tench/tench-0.png": "tench",
                      "tench/tench-1.png": "tench", "tench/tench-2.png": "tench"}


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    src = image_tree(tmp_path / "src", {"a": 5, "b": 7})
    opts = {"source": src, "calibration": 4, "seed": 11, "name": "same"}
    one = create_pack(PackCreateOptions(out=tmp_path / "one", **opts))
    two = create_pack(PackCreateOptions(out=tmp_path / "two", **opts))
    assert _tree_bytes(one.path) == _tree_bytes(two.path) and one.digest == two.digest
    # the files' names do not decide the splits, their content does
    renamed = tmp_path / "renamed"
    for path in src.rglob("*.png"):
        target = renamed / path.parent.name / f"z-{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    three = load_promptpack(create_pack(PackCreateOptions(out=tmp_path / "three", **{**opts, "source": renamed})).path)
    assert [s.sha256 for s in three.samples("calibration")] == [
        s.sha256 for s in load_promptpack(one.path).samples("calibration")]
    other_seed = create_pack(PackCreateOptions(out=tmp_path / "seed", **{**opts, "seed": 12}))
    assert (other_seed.path / "calibration.jsonl").read_bytes() != (one.path / "calibration.jsonl").read_bytes()


def test_real_photos_grayscale_and_rgba(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    src = tmp_path / "src"
    real_photo_crops(src / "person", 4)
    make_image(src / "other" / "gray.png", 1, mode="L")
    make_image(src / "other" / "alpha.png", 2, mode="RGBA")
    made = create_pack(PackCreateOptions(source=src, out=tmp_path / "pack", calibration=2))
    pack = load_promptpack(made.path)
    images = [s.load_image() for s in pack.samples("eval") + pack.samples("calibration")]
    assert all(im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8 for im in images)
    assert pack.manifest.input.height is None  # 96x112 photos and 40x32 drawings
    assert verify_pack(made.path).problems == []


def test_unreadable_and_duplicate_images_are_refused_one_line_each(tmp_path: Path) -> None:
    src = image_tree(tmp_path / "src", {"a": 3, "b": 3})
    truncate(src / "a" / "a-1.png")
    (src / "b" / "copy.png").write_bytes((src / "a" / "a-0.png").read_bytes())
    (src / "b" / "empty.jpg").write_bytes(b"")
    (src / "b" / "deeper").mkdir()
    problems = _refusal(PackCreateOptions(source=src, out=tmp_path / "pack", calibration=1))
    assert len(problems) == 4
    assert problems[0] == (f"{src}/b/deeper: a folder inside class folder 'b'; put a class's images "
                           "directly in its folder (one level of class folders)")
    assert problems[1].startswith(f"{src}/a/a-1.png: cannot decode the image (")
    assert problems[1].endswith("); remove or replace the file")
    assert problems[2].startswith(f"{src}/b/empty.jpg: cannot decode the image (")
    digest = sha256_file(src / "a" / "a-0.png")
    assert problems[3] == (f"{src}/b/copy.png: same bytes as {src}/a/a-0.png (sha256 {digest[:12]}...); "
                           "remove one of them")


def test_too_few_samples_and_bad_options(tmp_path: Path) -> None:
    src = image_tree(tmp_path / "src", {"a": 3, "b": 2})
    out = tmp_path / "pack"
    with pytest.raises(InputError) as info:
        create_pack(PackCreateOptions(source=src, out=out, calibration=3, eval=3))
    assert str(info.value) == (f"{src}: 5 usable sample(s), fewer than --calibration 3 + --eval 3 = 6; "
                               "add samples or ask for fewer")
    with pytest.raises(InputError, match=r"fewer than --calibration 16 \+ at least 1 eval sample = 17"):
        create_pack(PackCreateOptions(source=src, out=out))
    cases = {
        "--task object-detection: .* is an image folder, which makes a image-classification pack":
            {"task": Task.OBJECT_DETECTION},
        "--text-column: only for a CSV/JSONL of texts": {"text_column": "t"},
        "--images: only for a COCO detection JSON": {"images": src},
        r"--version: '1\.0' is not MAJOR\.MINOR\.PATCH": {"version": "1.0"},
        "--calibration: needs at least 1 sample": {"calibration": 0},
        "--classes: duplicate class name": {"classes": ["a", "b", "a"]},
        "--support: the support split gives each class its centroid": {"support": 1, "classes": None, "calibration": 1},
    }
    for message, extra in cases.items():
        if "support" in extra:
            make_image(tmp_path / "flat" / "x.png", 1)
            make_image(tmp_path / "flat" / "y.png", 2)
            make_image(tmp_path / "flat" / "z.png", 3)
            extra = {**extra, "source": tmp_path / "flat"}
        with pytest.raises(InputError, match=message):
            create_pack(PackCreateOptions(**{"source": src, "out": out, "calibration": 1, **extra}))
    assert not out.exists()


def test_out_is_never_overwritten_without_force(tmp_path: Path) -> None:
    src = image_tree(tmp_path / "src", {"a": 3})
    out = tmp_path / "pack"
    create_pack(PackCreateOptions(source=src, out=out, calibration=1, name="first"))
    with pytest.raises(InputError, match=r"--out .*pack: already exists; pass --force to replace it"):
        create_pack(PackCreateOptions(source=src, out=out, calibration=1))
    create_pack(PackCreateOptions(source=src, out=out, calibration=2, name="second", force=True))
    assert load_promptpack(out).name == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack", "src"]  # no temporary folders left
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not a PromptPack; refusing to replace it, even with --force"):
        create_pack(PackCreateOptions(source=src, out=other, calibration=1, force=True))
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(InputError, match="inside the source"):
        create_pack(PackCreateOptions(source=src, out=src / "pack", calibration=1))


def test_link_mode_pins_the_same_bytes(tmp_path: Path) -> None:
    src = image_tree(tmp_path / "src", {"a": 3, "b": 3})
    copied = create_pack(PackCreateOptions(source=src, out=tmp_path / "copied", calibration=2, name="p"))
    linked = create_pack(PackCreateOptions(source=src, out=tmp_path / "linked", calibration=2, name="p", link=True))
    assert linked.digest == copied.digest
    # hard links: no copy, and nothing in the pack points outside it
    assert os.path.samefile(linked.path / "images" / "a" / "a-0.png", src / "a" / "a-0.png")
    assert not (linked.path / "images" / "a" / "a-0.png").is_symlink()
    assert verify_pack(linked.path).problems == []
    make_image(src / "a" / "a-0.png", 999)  # the linked source changes afterwards
    problems = verify_pack(linked.path).problems
    assert len(problems) == 1 and "files.images/a/a-0.png: sha256 mismatch" in problems[0]


# --------------------------------------------------------------------------- COCO


def test_coco_detection_pack(tmp_path: Path) -> None:
    coco = small_coco(tmp_path / "coco")
    made = create_pack(PackCreateOptions(source=coco, images=tmp_path / "coco" / "images", out=tmp_path / "pack",
                                         calibration=1, seed=1))
    assert made.task is Task.OBJECT_DETECTION and made.labelled == 3
    assert made.classes == ["cat", "dog"]  # category-id order: 3, 7
    assert made.notes == ["skipped 1 crowd annotation(s) (iscrowd: 1), as COCO's evaluation does"]
    pack = load_promptpack(made.path)
    assert pack.manifest.scorers == ["coco-detection"] and pack.manifest.input.height is None
    assert pack.manifest.sources[0].sha256 == sha256_file(coco)
    samples = {s.id: s for split in pack.splits for s in pack.samples(split)}
    a = samples["a.png"].target
    assert a["boxes"].dtype == np.float32 and a["boxes"].shape == (2, 4)
    np.testing.assert_allclose(a["boxes"], [[4, 5, 24.5, 15], [30, 20, 64, 48]])
    assert a["labels"] == ["dog", "cat"]
    assert samples["b.png"].target["labels"] == ["cat"]  # the crowd region is not an object
    assert samples["c.png"].target["boxes"].shape == (0, 4) and samples["c.png"].target["labels"] == []
    assert verify_pack(made.path).problems == []


def test_coco_problems_name_the_file_and_ids(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.png", "width": 50, "height": 40},
        {"id": 3, "file_name": "missing.png", "width": 10, "height": 10},
    ]
    root = tmp_path / "coco"
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [50, 5, 20, 10]},  # past the right edge
        {"id": 11, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]},  # unknown category
        {"id": 12, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5]},  # malformed
        {"id": 13, "image_id": 4, "category_id": 1, "bbox": [1, 1, 5, 5]},  # unknown image
    ]
    coco = coco_set(root, images[:2], annotations, [{"id": 1, "name": "thing"}])
    doc = json.loads(coco.read_text())
    doc["images"].append(images[2])
    doc["images"][1]["width"] = 51  # says 51 wide, the file is 50
    coco.write_text(json.dumps(doc))
    problems = _refusal(PackCreateOptions(source=coco, images=root / "images", out=tmp_path / "pack"))
    assert problems == [
        f"{root}/images/b.png: image 2: the file is 50x40 but instances.json says 51x40",
        f"{root}/images/missing.png: image 3: not found in {root}/images; give the images folder with --images",
        f"{coco}: annotation 10 (image 1 'a.png'): bbox [50.0, 5.0, 20.0, 10.0] lies outside the 64x48 image",
        f"{coco}: annotation 11 (image 1 'a.png'): unknown category_id 9 (categories: 1)",
        f"{coco}: annotation 12 (image 2 'b.png'): bbox must be [x, y, width, height], got [1, 1, 5]",
        f"{coco}: annotation 13: image_id 4 is not an image of the file",
    ]


def test_coco_images_default_to_the_json_folder(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    make_image(root / "x.png", 1, (20, 20))
    make_image(root / "y.png", 2, (20, 20))
    (root / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.png"}, {"id": 2, "file_name": "y.png"}],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 5, "bbox": [0, 0, 20, 20]}],
        "categories": [{"id": 5, "name": "box"}],
    }))
    made = create_pack(PackCreateOptions(source=root / "ann.json", out=tmp_path / "pack", calibration=1))
    assert made.splits == {"eval": 1, "calibration": 1}
    assert load_promptpack(made.path).manifest.input.height == 20


# --------------------------------------------------------------------------- text tables


def test_csv_text_classification(tmp_path: Path) -> None:
    rows = ["text,label"] + [f'"review number {i}, fine",{i % 3}' for i in range(12)]
    rows += ['"no label for this one",']
    csv_path = tmp_path / "reviews.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    made = create_pack(PackCreateOptions(source=csv_path, out=tmp_path / "pack", calibration=3, eval=6,
                                         language="en"))
    pack = load_promptpack(made.path)
    assert (pack.task, pack.modality.value) == (Task.TEXT_CLASSIFICATION, "text")
    assert pack.manifest.classes == ["0", "1", "2"] and pack.manifest.scorers == ["text-classification"]
    assert pack.manifest.input.language == "en"
    assert pack.manifest.sources[0].role == "text" and pack.manifest.sources[0].sha256 == sha256_file(csv_path)
    calib = pack.samples("calibration")
    assert sorted(s.target["label"] for s in calib) == ["0", "1", "2"]
    texts = {s.id: s for split in pack.splits for s in pack.samples(split)}
    assert texts["row-00001"].text == "review number 0, fine"
    assert texts["row-00001"].sha256 == hashlib.sha256(b"review number 0, fine").hexdigest()
    assert made.path.joinpath("images").exists() is False
    # integer labels sort as numbers: the model's class 10 comes after 9
    write_jsonl(tmp_path / "ten.jsonl", [{"text": f"t{i}", "label": i} for i in range(11)])
    ten = create_pack(PackCreateOptions(source=tmp_path / "ten.jsonl", out=tmp_path / "ten", calibration=1))
    assert ten.classes == [str(i) for i in range(11)]


def test_jsonl_columns_ids_classes_and_support(tmp_path: Path) -> None:
    rows = [{"uid": f"u{i}", "body": f"command {i}", "intent": ["stop", "go"][i % 2]} for i in range(10)]
    src = write_jsonl(tmp_path / "cmds.jsonl", rows)
    made = create_pack(PackCreateOptions(source=src, out=tmp_path / "pack", text_column="body",
                                         label_column="intent", id_column="uid", classes=["stop", "go", "turn"],
                                         calibration=2, support=2, eval=4))
    pack = load_promptpack(made.path)
    assert pack.splits == ["eval", "calibration", "support"] and pack.manifest.classes == ["stop", "go", "turn"]
    assert sorted(s.target["label"] for s in pack.samples("support")) == ["go", "stop"]
    assert {s.id for s in pack.samples("eval")} <= {f"u{i}" for i in range(10)}
    assert pack.manifest.build.args == {"task": "text-classification", "calibration": 2, "eval": 4, "support": 2,
                                        "stratified": True, "text_column": "body", "label_column": "intent",
                                        "id_column": "uid"}
    problems = _refusal(PackCreateOptions(source=src, out=tmp_path / "x", text_column="body",
                                          label_column="intent", classes=["stop"]))
    assert problems == [f"{src}:2: label 'go' is not one of --classes"] + [
        f"{src}:{n}: label 'go' is not one of --classes" for n in (4, 6, 8, 10)]


def test_text_problems_one_line_each(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    src.write_text(
        '{"text": "hello", "label": "a"}\n'
        '{"text": "", "label": "a"}\n'
        "not json\n"
        '{"text": "hello", "label": "b"}\n'
        '{"text": "ok", "label": 1.5}\n'
        '[1, 2]\n',
        encoding="utf-8",
    )
    problems = _refusal(PackCreateOptions(source=src, out=tmp_path / "pack", calibration=1))
    assert problems == [
        f"{src}:3: invalid JSON: Expecting value",
        f"{src}:6: a line must be a JSON object, got list",
        f"{src}:2: text: needs a non-empty text, got empty",
        f"{src}:5: label: a label is a string or an integer, got 1.5",
        f"{src}:4: same text as {src}:1 (sha256 {hashlib.sha256(b'hello').hexdigest()[:12]}...); remove one of them",
    ]
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("sentence,label\nhi,a\n", encoding="utf-8")
    assert _refusal(PackCreateOptions(source=csv_path, out=tmp_path / "pack")) == [
        f"{csv_path}: no column 'text' (columns: sentence, label); pass --text-column"]
    (tmp_path / "t.jsonl.bak").write_text("x")
    with pytest.raises(InputError, match=r"not a source pack create reads"):
        create_pack(PackCreateOptions(source=tmp_path / "t.jsonl.bak", out=tmp_path / "pack"))


def test_deeply_nested_sources_are_one_problem_not_a_recursion_error(tmp_path: Path) -> None:
    """A JSONL line or a COCO file nested a million levels deep: bounded parsing, one problem line."""
    src = tmp_path / "texts.jsonl"
    src.write_text('{"text": "go", "label": "a"}\n' + "[" * 1_000_000 + "\n", encoding="utf-8")
    problems = _refusal(PackCreateOptions(source=src, out=tmp_path / "p1", calibration=1))
    assert len(problems) == 1 and problems[0].startswith(f"{src}:2:") and "nested deeper than" in problems[0]
    coco = tmp_path / "coco.json"
    coco.write_text("[" * 1_000_000, encoding="utf-8")
    problems = _refusal(PackCreateOptions(source=coco, out=tmp_path / "p2", calibration=1))
    assert len(problems) == 1 and problems[0].startswith(f"{coco}") and "nested deeper than" in problems[0]
