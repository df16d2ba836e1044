"""`edgegate validate`: a valid pipeline passes; each kind of bad input is one error line, exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result

from edgegate.cli import cli

ROOT = Path(__file__).parents[1]
MINI_PIPELINE = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"
MINI_PACK = ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Device names resolve against the nearest devices/ walking up from the cwd.
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEGATE_DEVICES_DIR", raising=False)
    monkeypatch.delenv("EDGEGATE_DB", raising=False)


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart by default


def _validate(*args: str) -> Result:
    return _runner().invoke(cli, ["validate", *args])


def _assert_error(result: Result, line: str | None = None) -> str:
    """Exit 2 with exactly one ``error:`` line on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    if line is not None:
        assert lines[0] == line
    return lines[0]


def _pipeline_copy(tmp_path: Path, edit: Callable[[str], str] | None = None, pack: Path = MINI_PACK) -> Path:
    """The mini pipeline written to tmp_path with its PromptPack path made absolute."""
    text = MINI_PIPELINE.read_text()
    rel = "  promptpack: ../packs/person_detect_mini\n"
    assert rel in text
    text = text.replace(rel, f"  promptpack: {pack}\n")
    if edit is not None:
        edited = edit(text)
        assert edited != text, "the edit did not apply: the fixture pipeline changed"
        text = edited
    out = tmp_path / "pipeline.yaml"
    out.write_text(text)
    return out


def _line_of(path: Path, needle: str) -> int:
    (n,) = [i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln]
    return n


# ----------------------------------------------------------------------------- ok


def test_validate_person_detect_ok() -> None:
    result = _validate("pipelines/person_detect.yaml")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ok: person_detect: 3 graph(s) (pnet, rnet, onet), device htp-sim (qnn-emulator, ")
    assert lines[0].endswith(", 10 gate(s)")


def test_validate_copy_with_absolute_pack_ok(tmp_path: Path) -> None:
    result = _validate(str(_pipeline_copy(tmp_path)))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: person_detect_mini: 3 graph(s) (pnet, rnet, onet), device htp-sim ")


# ----------------------------------------------------------------------------- errors


def test_missing_pipeline_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    _assert_error(_validate(str(missing)), f"error: {missing}: file not found")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = _pipeline_copy(tmp_path, lambda t: t + "bogus: 1\n")
    line = _line_of(path, "bogus: 1")
    _assert_error(
        _validate(str(path)),
        f"error: {path}:{line}: bogus: unknown field 'bogus' "
        "(allowed: name, description, model, quantization, device, benchmark, evaluation, adversarial, gates)",
    )


def test_bad_gate_expression(tmp_path: Path) -> None:
    path = _pipeline_copy(tmp_path, lambda t: t.replace('"recall >= 0.95"', '"recall >=> 0.95"'))
    line = _line_of(path, "recall >=> 0.95")
    _assert_error(
        _validate(str(path)),
        f"error: {path}:{line}: gates[2]: gate 'recall >=> 0.95': expected a number at column 10, found '>' "
        "(form: METRIC OP NUMBER [* baseline], e.g. 'accuracy >= 0.99 * baseline')",
    )


def test_unknown_metric_in_gate(tmp_path: Path) -> None:
    path = _pipeline_copy(tmp_path, lambda t: t.replace('"recall >= 0.95"', '"recal >= 0.95"'))
    line = _line_of(path, "recal >= 0.95")
    err = _assert_error(
        _validate(str(path)),
        f"error: {path}:{line}: gates[2]: gate 'recal >= 0.95': unknown metric 'recal' (did you mean 'recall'?)",
    )
    assert "did you mean" in err


def test_unknown_device_flag() -> None:
    known = sorted(p.stem for p in (ROOT / "devices").glob("*.yaml"))
    close = [k for k in known if k.startswith("htp-sim")]
    hint = " or ".join(f"'{k}'" for k in close[:3])
    err = _assert_error(
        _validate("pipelines/person_detect.yaml", "--device", "htp-sm"),
        f"error: unknown device 'htp-sm' (did you mean {hint}?); known: {', '.join(known)}",
    )
    assert "did you mean 'htp-sim'" in err


def test_tampered_pack_image(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(MINI_PACK, pack)
    image = pack / "images" / "eval" / "eval-0000.png"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    path = _pipeline_copy(tmp_path, pack=pack)
    err = _assert_error(_validate(str(path)))
    assert err.startswith(f"error: {pack / 'manifest.yaml'}: files.images/eval/eval-0000.png: sha256 mismatch (")
    assert "sha256 mismatch" in err
    assert err.endswith("; rebuild the pack or restore the file")


def test_pnet_shape_does_not_match_adapter(tmp_path: Path) -> None:
    path = _pipeline_copy(
        tmp_path, lambda t: t.replace("shape: [1, 3, 114, 170]", "shape: [1, 3, 100, 100]")
    )
    line = _line_of(path, "shape: [1, 3, 100, 100]")
    err = _assert_error(
        _validate(str(path)),
        f"error: {path}:{line}: model.graphs.pnet.inputs[0].shape: [1, 3, 100, 100] does not match "
        "what the adapter feeds: [1, 3, 114, 170] (from adapter_options)",
    )
    assert "model.graphs.pnet.inputs[0].shape" in err
