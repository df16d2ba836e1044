"""`edgegate devices`: the local device files, and AI Hub's live list with which file maps to each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgegate.cli import cli

sys.path.insert(0, str(Path(__file__).parent))
from fakes.aihub_testing import serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "eg-devices-token-51c0ffee"


def _devices(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["devices", "--devices-dir", str(ROOT / "devices"), *args])
    return result.exit_code, result.output


def test_local_files_only_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGEGATE_AIHUB_TOKEN", raising=False)
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "absent.ini"))
    code, out = _devices()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["device", "file", "kind", "chipset"]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == {p.stem for p in (ROOT / "devices").glob("*.yaml")}
    assert rows["qcs6490-aihub"].split()[1:4] == ["aihub", "qcs6490", "v68"]
    assert rows["qcs6490-aihub"].endswith("Dragonwing RB3 Gen 2 Vision Kit")
    assert lines[-1].startswith("AI Hub: not queried (no credentials")


def test_aihub_list_maps_local_files_and_flags_retired_rb5(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with serve(monkeypatch, tmp_path, TOKEN):
        code, out = _devices()
        jcode, jout = _devices("--format", "json")
    assert code == 0 and jcode == 0
    assert TOKEN not in out and TOKEN not in jout
    listed = {line.strip().split("  ")[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert listed["Dragonwing RB3 Gen 2 Vision Kit"].endswith("<- qcs6490-aihub")
    assert listed["Dragonwing IQ-9075 EVK"].endswith("<- iq9075-aihub")
    assert not any("RB5" in name for name in listed)  # the 2026 catalogue has no RB5 (Proxy)
    assert "warning: rb5-aihub: AI Hub lists no device it resolves to; a run on it fails at once" in out
    data = json.loads(jout)
    assert data["aihub"]["unmatched"] == ["rb5-aihub"]
    by_name = {d["name"]: d for d in data["aihub"]["devices"]}
    assert by_name["Dragonwing RB3 Gen 2 Vision Kit"]["chipset"] == "qualcomm-qcs6490"
    assert {f["name"] for f in data["local"]} >= {"rb5-ssh", "htp-sim", "s24-aihub"}


def test_no_aihub_flag_skips_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGATE_AIHUB_TOKEN", TOKEN)
    monkeypatch.setenv("EDGEGATE_AIHUB_API_URL", "http://127.0.0.1:9")  # nothing listens: must not be called
    code, out = _devices("--no-aihub")
    assert code == 0 and out.splitlines()[-1].startswith("AI Hub: not queried")
