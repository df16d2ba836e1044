"""`edgegate pack create | verify | show`: exact output, one error line per problem, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fakes.pack_data import (
    image_tree,
    make_image,
    small_coco,
    truncate,
    write_jsonl,
)

from edgegate.artifacts import sha256_file
from edgegate.cli import cli
from edgegate.packs.promptpack import load_promptpack

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths in messages, as a user types them
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))


def _invoke(*args: str) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps stderr apart by default
    return runner.invoke(cli, list(args))


def _errors(result: Result) -> list[str]:
    """Exit 2, nothing on stdout, every stderr line an error line, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), lines
    return [line[len("error: "):] for line in lines]


def test_create_show_verify_an_image_folder(tmp_path: Path) -> None:
    image_tree(Path("photos"), {"cat": 4, "dog": 4})
    result = _invoke("pack", "create", "photos", "--out", "packs/pets", "--calibration", "2", "--seed", "7",
                     "--license", "CC0-1.0", "--source", "https://example.org/pets", "--attribution", "the test")
    assert result.exit_code == 0, result.output
    digest = load_promptpack("packs/pets").digest
    assert result.stdout.splitlines() == [
        "ok: wrote PromptPack pets 1.0.0 (image-classification) to packs/pets",
        "  splits: eval 6, calibration 2; 2 classes; 8 labelled samples",
        f"  digest: {digest}",
    ]
    assert result.stderr == ""

    show = _invoke("pack", "show", "packs/pets")
    assert show.exit_code == 0, show.output
    assert show.stdout.splitlines() == [
        "pack:     pets 1.0.0",
        f"digest:   {digest}",
        f"path:     {tmp_path / 'packs' / 'pets'}",
        "task:     image-classification (vision); input: image RGB uint8, 40x32",
        "scorers:  classification",
        "classes:  2 (cat, dog)",
        "splits:   eval 6, calibration 2",
        "labels:   eval  calibration",
        "  cat        3            1",
        "  dog        3            1",
        "sources:",
        "  https://example.org/pets (images)",
        "    licence: CC0-1.0",
        "    attribution: the test",
        "build:    edgegate pack create, seed 7",
        "files:    10 listed with their sha256 (edgegate pack verify checks them)",
    ]
    data = json.loads(_invoke("pack", "show", "packs/pets", "--format", "json").stdout)
    assert data["splits"] == {"eval": {"samples": 6, "labels": {"cat": 3, "dog": 3}, "unlabelled": 0},
                              "calibration": {"samples": 2, "labels": {"cat": 1, "dog": 1}, "unlabelled": 0}}
    assert (data["digest"], data["task"], data["classes"]) == (digest, "image-classification", ["cat", "dog"])
    assert data["sources"] == [{"name": "https://example.org/pets", "role": "images",
                                "loader": "edgegate pack create: image folder, one subfolder per class",
                                "license": "CC0-1.0", "attribution": "the test"}]

    verify = _invoke("pack", "verify", "packs/pets")
    assert verify.exit_code == 0, verify.output
    assert verify.stdout == (f"ok: pets 1.0.0 ({digest[:19]}): 10 files hashed, 8 images decoded, "
                             "splits eval 6, calibration 2\n")


def test_verify_names_every_changed_file(tmp_path: Path) -> None:
    image_tree(Path("photos"), {"a": 3, "b": 3})
    assert _invoke("pack", "create", "photos", "--out", "pack", "--calibration", "2").exit_code == 0
    make_image(Path("pack/images/a/a-0.png"), 99)
    Path("pack/images/b/b-2.png").unlink()
    assert _errors(_invoke("pack", "verify", "pack")) == [
        ("pack/manifest.yaml: files.images/a/a-0.png: sha256 mismatch (manifest "
        f"{load_promptpack('pack', verify=False).manifest.files['images/a/a-0.png'][:6]}..., "
        f"file {sha256_file(Path('pack/images/a/a-0.png'))[:6]}...); rebuild the pack or restore the file"),
        ("pack/manifest.yaml: files.images/b/b-2.png: listed in the manifest but missing; "
        "rebuild the pack or restore the file"),
    ]


def test_verify_decodes_every_image(tmp_path: Path) -> None:
    image_tree(Path("photos"), {"a": 3})
    assert _invoke("pack", "create", "photos", "--out", "pack", "--calibration", "1").exit_code == 0
    # a truncated image whose manifest hash was updated to match: only decoding finds it
    image = Path("pack/images/a/a-1.png")
    old = sha256_file(image)
    truncate(image)
    manifest = Path("pack/manifest.yaml")
    manifest.write_text(manifest.read_text().replace(old, sha256_file(image)))
    (line,) = _errors(_invoke("pack", "verify", "pack"))
    split = next(s for s in ("eval", "calibration")
                 if any(x.id == "a/a-1.png" for x in load_promptpack("pack").samples(s)))
    assert line.startswith(f"{image.resolve()}: sample 'a/a-1.png' of split '{split}': cannot decode the image (")


def test_create_refuses_with_one_line_per_problem_and_writes_nothing(tmp_path: Path) -> None:
    image_tree(Path("photos"), {"a": 3})
    truncate(Path("photos/a/a-0.png"))
    Path("photos/a/dup.png").write_bytes(Path("photos/a/a-1.png").read_bytes())
    lines = _errors(_invoke("pack", "create", "photos", "--out", "pack", "--calibration", "1"))
    assert len(lines) == 2
    assert lines[0].startswith("photos/a/a-0.png: cannot decode the image (")
    assert lines[1].startswith("photos/a/dup.png: same bytes as photos/a/a-1.png (sha256 ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("pack", "create", "nothing", "--out", "p"), "nothing: no such file or folder"),
        (("pack", "create", "photos", "--out", "p", "--classes", "a", "--classes-file", "c.txt"),
         "--classes and --classes-file: give one of them"),
        (("pack", "create", "photos", "--out", "p", "--calibration", "9"),
         ("photos: 3 usable sample(s), fewer than --calibration 9 + at least 1 eval sample = 10; "
         "add samples or ask for fewer")),
        (("pack", "create", "photos", "--out", "p", "--label-column", "y"),
         "--label-column: only for a CSV/JSONL of texts, not for photos"),
        (("pack", "create", "photos", "--out", "p", "--task", "text-classification"),
         "--task text-classification: photos is an image folder, which makes a image-classification pack"),
        (("pack", "create", "photos", "--out", "photos/p"), ("--out photos/p: inside the source photos; "
         "write the pack elsewhere")),
        (("pack", "create"), "cli pack create: Missing argument 'SOURCE'."),
        (("pack", "show", "nowhere"), "nowhere: not a pack directory or its manifest.yaml"),
        (("pack", "verify", "photos"), "photos/manifest.yaml: manifest not found; is this a PromptPack directory?"),
    ],
)
def test_bad_input_is_one_error_line(args: tuple[str, ...], line: str) -> None:
    image_tree(Path("photos"), {"a": 3})
    assert _errors(_invoke(*args)) == [line]
    assert not Path("p").exists()


def test_create_from_coco_and_text(tmp_path: Path) -> None:
    small_coco(Path("coco"))
    result = _invoke("pack", "create", "coco/instances.json", "--images", "coco/images", "--out", "det",
                     "--calibration", "1", "--license", "CC-BY-4.0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "ok: wrote PromptPack det 1.0.0 (object-detection) to det"
    assert lines[1] == "  splits: eval 2, calibration 1; 2 classes; 3 boxes"
    assert lines[3] == "note: skipped 1 crowd annotation(s) (iscrowd: 1), as COCO's evaluation does"
    show = _invoke("pack", "show", "det").stdout
    assert "task:     object-detection (vision); input: image RGB uint8, any size" in show
    assert "classes:  2 (cat, dog)" in show and "  (no box)" in show
    assert _invoke("pack", "verify", "det").exit_code == 0

    write_jsonl(Path("texts.jsonl"), [{"sentence": f"text {i}", "y": "pos" if i % 2 else "neg"} for i in range(8)])
    Path("classes.txt").write_text("neg\npos\n\n")
    result = _invoke("pack", "create", "texts.jsonl", "--out", "txt", "--text-column", "sentence",
                     "--label-column", "y", "--classes-file", "classes.txt", "--calibration", "2",
                     "--language", "en")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == "  splits: eval 6, calibration 2; 2 classes; 8 labelled samples"
    data = json.loads(_invoke("pack", "show", "txt", "--format", "json").stdout)
    assert data["input"] == {"kind": "text", "language": "en", "encoding": "utf-8"}
    assert data["splits"]["calibration"]["labels"] == {"neg": 1, "pos": 1}


def test_show_and_verify_a_shipped_pack() -> None:
    pack = ROOT / "promptpacks" / "person_detect"
    result = _invoke("pack", "show", str(pack))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["pack:     person_detect 1.0.0", f"digest:   {load_promptpack(pack, verify=False).digest}"]
    assert "boxes:     eval  calibration" in lines and "  face      173           35" in lines
    verify = _invoke("pack", "verify", str(ROOT / "tests" / "fixtures" / "packs" / "robot_intents_mini"))
    assert verify.exit_code == 0 and verify.stdout.startswith("ok: robot_intents_mini 1.0.0 (sha256:")
