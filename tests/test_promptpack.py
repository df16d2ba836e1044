from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgegate.errors import PackIntegrityError, SpecError, UnknownNameError
from edgegate.promptpack import PromptPack, load_promptpack, sha256_file

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
    assert str(info.value) == (
        f"{manifest}:{line}: scorers[0]: unknown scorer 'detectoin' (did you mean 'detection'?); known: detection"
    )


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
