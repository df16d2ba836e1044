"""Every command has help; the database commands on an empty and a small database."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from edgegate.cli import cli
from edgegate.db import ExperimentDB, StoredMetric


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # anything written to a default .edgegate/ lands here
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEGATE_DB", raising=False)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/t.db"


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart by default


def _invoke(*args: str) -> Result:
    return _runner().invoke(cli, list(args))


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        out.append(((*path, name), cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*path, name)))
    return out


ALL_COMMANDS = _commands(cli)


def test_walk_finds_nested_commands() -> None:
    found = {" ".join(p) for p, _ in ALL_COMMANDS}
    assert {"golden", "golden clear", "golden set", "golden show", "run", "runs", "runs list", "runs show",
            "compare", "validate"} <= found


@pytest.mark.parametrize("path", [(), *(p for p, _ in ALL_COMMANDS)], ids=lambda p: " ".join(p) or "edgegate")
def test_help(path: tuple[str, ...]) -> None:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    assert cmd.help and cmd.help.strip(), f"{' '.join(path)} has no help text"
    result = _invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"Usage: {' '.join(('cli', *path))} ")
    first_line = cmd.help.strip().splitlines()[0]
    assert " ".join(first_line.split()) in " ".join(result.stdout.split())
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("nosuch",), "error: cli: No such command 'nosuch'."),
        (("compare",), "error: cli compare: Missing option '--baseline-run'."),
        (("runs", "list", "--format", "bogus"),
         "error: cli runs list: Invalid value for '--format': 'bogus' is not one of 'table', 'csv', 'json'."),
        (("compare", "--baseline-run", "1", "--candidate-run", "2", "--rebench", "--processes", "0"),
         "error: cli compare: Invalid value for '--processes': 0 is not in the range 1<=x<=1000."),
        (("golden", "set"), "error: cli golden set: Missing argument 'RUN_ID'."),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], line: str) -> None:
    result = _invoke(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == line + "\n"


def test_version() -> None:
    from edgegate import __version__

    result = _invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"edgegate, version {__version__}\n"


# ----------------------------------------------------------------------------- empty database


def test_golden_show_empty(db_url: str) -> None:
    result = _invoke("golden", "show", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "no golden runs\n"
    assert result.stderr == ""


def test_golden_show_empty_for_pipeline(db_url: str) -> None:
    result = _invoke("golden", "show", "--pipeline", "person_detect", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "no golden runs for person_detect\n"


def test_golden_set_unknown_run(db_url: str) -> None:
    result = _invoke("golden", "set", "999", "--db", db_url)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: golden set: no run with id 999 in {db_url}\n"
    assert "Traceback" not in result.output


def test_runs_empty(db_url: str, tmp_path: Path) -> None:
    result = _invoke("runs", "list", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "no runs\n"
    assert result.stderr == ""
    assert (tmp_path / "t.db").is_file()
    assert not (tmp_path / ".edgegate").exists()


def test_db_from_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGATE_DB", db_url)
    result = _invoke("golden", "set", "5")
    assert result.exit_code == 2
    assert result.stderr == f"error: golden set: no run with id 5 in {db_url}\n"


def test_bad_db_url_is_one_error_line() -> None:
    result = _invoke("runs", "list", "--db", "nosuchdialect://x")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --db: cannot open database URL 'nosuchdialect://x': ")
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------- a small database


def _run(db: ExperimentDB, status: str | None) -> int:
    run_id = db.start_run(
        invocation="inv", pipeline="person_detect", device="htp-sim", variant="fp32",
        model_digest=None, pack_digest=None, config_digest=None,
    )
    if status is not None:
        db.finish_run(run_id, status)
    return run_id


def test_golden_set_show_clear(db_url: str) -> None:
    db = ExperimentDB(db_url)
    run_id = _run(db, "completed")
    db.add_metrics(run_id, [StoredMetric("map50", 0.875, "ratio", "computed"),
                            StoredMetric("npu_nodes", 17, "nodes", "computed")])

    result = _invoke("golden", "set", str(run_id), "--db", db_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"golden for person_detect on htp-sim is now run {run_id} (fp32)\n"
    assert db.golden("person_detect", "htp-sim") == run_id

    result = _invoke("golden", "show", "--db", db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"person_detect on htp-sim: run {run_id} (set ")
    assert lines[0].endswith(" UTC)")
    assert lines[1:] == ["  map50 = 0.875 ratio [computed]", "  npu_nodes = 17 nodes [computed]"]

    result = _invoke("golden", "clear", "person_detect", "--device", "htp-sim", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "cleared 1 golden run(s) for person_detect on htp-sim\n"
    assert db.golden("person_detect", "htp-sim") is None


def test_golden_set_refuses_unfinished_run(db_url: str) -> None:
    db = ExperimentDB(db_url)
    run_id = _run(db, None)
    result = _invoke("golden", "set", str(run_id), "--db", db_url)
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: golden set: run {run_id} ended 'running'; only a run that finished can be golden\n"
    )
    assert db.golden("person_detect", "htp-sim") is None


def test_runs_lists_newest_first(db_url: str) -> None:
    db = ExperimentDB(db_url)
    first = _run(db, "completed")
    second = _run(db, None)
    db.finish_run(second, "error", error="compile failed")
    result = _invoke("runs", "list", "--db", db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3  # header + two runs
    assert lines[0].split()[:5] == ["id", "pipeline", "device", "variant", "status"]
    assert lines[1].split()[:5] == [str(second), "person_detect", "htp-sim", "fp32", "error"]
    assert lines[1].rstrip().endswith("compile failed")
    assert lines[2].split()[:5] == [str(first), "person_detect", "htp-sim", "fp32", "completed"]
    result = _invoke("runs", "list", "--limit", "1", "--db", db_url)
    assert len(result.stdout.splitlines()) == 2
    csv = _invoke("runs", "list", "--format", "csv", "--db", db_url).stdout.splitlines()
    assert csv[0].startswith("id,pipeline,device,variant,status,") and len(csv) == 3
    import json as _json

    rows = _json.loads(_invoke("runs", "list", "--format", "json", "--db", db_url).stdout)
    assert [r["id"] for r in rows] == [second, first] and rows[0]["error"] == "compile failed"
    show = _invoke("runs", "show", str(first), "--db", db_url)
    assert show.exit_code == 0 and show.stdout.startswith(f"run {first}: person_detect on htp-sim (fp32) completed")
    missing = _invoke("runs", "show", "999", "--db", db_url)
    assert missing.exit_code == 2 and missing.stderr.startswith("error: runs show: no run with id 999")