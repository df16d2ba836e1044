"""Exit codes (issue 15, section 2): 1 means a gate failed and nothing else; bad input is 2,
a target/tool/machine failure 3, a bug 4; every failure is one ``error:`` line (or the
verifier's ``invalid:`` line), never a traceback on the terminal."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgegate.cli import cli
from edgegate.db import ExperimentDB
from edgegate.errors import InputError

ROOT = Path(__file__).parents[1]
MINI_PIPELINE = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"
MINI_PACK = ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)  # device names resolve against the nearest devices/
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("EDGEGATE_DEVICES_DIR", raising=False)
    monkeypatch.delenv("EDGEGATE_DB", raising=False)


def _invoke(*args: str) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, list(args))


def _one_line(result: Result, code: int, prefix: str = "error: ") -> str:
    """Exit `code` with one line on stderr starting with `prefix`, and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


# ---------------------------------------------------------------- a pack with one bad file


def _bad_pack(tmp_path: Path, rel: str, data: bytes) -> tuple[Path, Path]:
    """The mini pack with `rel` replaced by `data` and the manifest re-hashed (the pack's
    hashes are right, its content is not); returns (pipeline, the replaced file)."""
    pack = tmp_path / "pack"
    shutil.copytree(MINI_PACK, pack)
    target = pack / rel
    old = hashlib.sha256(target.read_bytes()).hexdigest()
    target.write_bytes(data)
    manifest = pack / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace(old, hashlib.sha256(data).hexdigest()))
    text = MINI_PIPELINE.read_text().replace("  promptpack: ../packs/person_detect_mini\n", f"  promptpack: {pack}\n")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(text)
    return pipeline, target


IMAGE = "images/eval/eval-0001.png"


@pytest.mark.parametrize("kind", ["truncated", "garbage", "undersized"])
def test_validate_decodes_every_image(tmp_path: Path, kind: str) -> None:
    good = (MINI_PACK / IMAGE).read_bytes()
    data = {"truncated": good[: len(good) // 2], "garbage": b"\x89PNG\r\n\x1a\n" + b"garbage" * 10,
            "undersized": b"\x89PNG"}[kind]
    pipeline, image = _bad_pack(tmp_path, IMAGE, data)
    line = _one_line(_invoke("validate", str(pipeline)), 2)
    assert line.startswith(f"error: {image}: sample 'eval-0001' of split 'eval': not a decodable image (")


def test_empty_eval_split_fails_validate_at_the_field(tmp_path: Path) -> None:
    pipeline, _ = _bad_pack(tmp_path, "eval.jsonl", b"")
    manifest = tmp_path / "pack" / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("samples: eval.jsonl\n    count: 6", "samples: eval.jsonl\n    count: 0"))
    line = _one_line(_invoke("validate", str(pipeline)), 2)
    assert line.startswith(f"error: {pipeline}:")
    assert "evaluation.split: split 'eval' of PromptPack person_detect_mini has no samples" in line


def test_run_refuses_bad_data_before_any_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 1 decodes the samples: nothing is exported, compiled or stored first."""
    import edgegate.run.pipeline as pipeline_mod

    def no_export(*_a: object, **_k: object) -> None:
        raise AssertionError("export ran before the samples were checked")

    monkeypatch.setattr(pipeline_mod, "export_graphs", no_export)
    pipeline, image = _bad_pack(tmp_path, IMAGE, b"\x89PNG")
    url = f"sqlite:///{tmp_path / 'eg.db'}"
    with pytest.raises(InputError, match="not a decodable image"):
        pipeline_mod.run_pipeline(pipeline, pipeline_mod.RunOptions(device="cpu", db_url=url, home=tmp_path / "h"))
    line = _one_line(_invoke("run", str(pipeline), "--device", "cpu", "--db", url, "--quiet"), 2)
    assert str(image) in line
    assert ExperimentDB(url).list_runs() == []


def test_non_utf8_jsonl_is_input_error_naming_the_file(tmp_path: Path) -> None:
    data = (MINI_PACK / "eval.jsonl").read_bytes().replace(b"grass", b"gr\xffss", 1)
    pipeline, jsonl = _bad_pack(tmp_path, "eval.jsonl", data)
    line = _one_line(_invoke("validate", str(pipeline)), 2)
    assert line.startswith(f"error: {jsonl}")


# ---------------------------------------------------------------- run ids and the database


@pytest.mark.parametrize("command", [["runs", "show"], ["golden", "set"]])
def test_thirty_digit_run_id_is_no_such_run(tmp_path: Path, command: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'eg.db'}"
    line = _one_line(_invoke(*command, "1" * 30, "--db", url), 2)
    assert f"no run with id {'1' * 30}" in line


def _damaged_db(tmp_path: Path) -> str:
    path = tmp_path / "eg.db"
    url = f"sqlite:///{path}"
    db = ExperimentDB(url)
    for _ in range(200):
        rid = db.start_run(invocation="i", pipeline="p" * 150, device="d", variant="fp32", model_digest="m" * 60,
                           pack_digest=None, config_digest=None, details={"x": "y" * 500})
        db.finish_run(rid, "completed")
    db.engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    for off in range(4096 * 3, min(len(data), 4096 * 40)):  # damage pages after the schema's
        if off % 7:
            data[off] = 0x5A
    path.write_bytes(bytes(data))
    return url


@pytest.mark.parametrize("command", [["runs", "show", "150"], ["runs", "list"],
                                     ["compare", "--baseline-run", "1", "--candidate-run", "2"]])
def test_damaged_database_is_one_line_exit_3(tmp_path: Path, command: list[str]) -> None:
    url = _damaged_db(tmp_path)
    line = _one_line(_invoke(*command, "--db", url), 3)
    assert line.startswith(f"error: database {url}: the database file is damaged")


# ---------------------------------------------------------------- the machine: full, read-only


def test_oserror_names_the_path_and_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A home on a read-only file system: exit 3, the directory and "read-only file system"."""
    import edgegate.db.engine as engine

    def refuse(self: Path, *a: object, **k: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(engine.Path, "mkdir", refuse)
    url = f"sqlite:///{tmp_path / 'ro' / 'eg.db'}"
    line = _one_line(_invoke("runs", "list", "--db", url), 3)
    assert line == f"error: --db {url}: {tmp_path / 'ro'}: read-only file system"


def test_keys_generate_on_a_full_disk_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgegate.report.signing as signing

    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(signing.os, "fsync", full)
    out = tmp_path / "keys"
    line = _one_line(_invoke("keys", "generate", "--out", str(out)), 3)
    assert line == f"error: keys generate: {out / 'edgegate.key'}: disk full"
    assert list(out.iterdir()) == []  # no 0-byte key blocking the next try
    monkeypatch.setattr(signing.os, "fsync", real_fsync)
    result = _invoke("keys", "generate", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["edgegate.key", "edgegate.pub"]


@pytest.fixture
def small_fs(tmp_path: Path):
    """A real 64 KiB tmpfs (root only; skipped elsewhere)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_keys_generate_on_a_real_full_then_read_only_fs(small_fs: Path) -> None:
    with open(small_fs / "fill", "wb", buffering=0) as f:  # fill it up
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass
    line = _one_line(_invoke("keys", "generate", "--out", str(small_fs)), 3)
    assert line.endswith(": disk full") and str(small_fs) in line
    assert sorted(p.name for p in small_fs.iterdir()) == ["fill"]
    (small_fs / "fill").unlink()
    assert _invoke("keys", "generate", "--out", str(small_fs)).exit_code == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    line = _one_line(_invoke("keys", "generate", "--out", str(small_fs / "more")), 3)
    assert line == f"error: {small_fs / 'more'}: read-only file system"


# ---------------------------------------------------------------- verify and internal errors


@pytest.mark.parametrize("field,value", [("measurements", []), ("verdict", "yes"), ("pipeline", "x"), ("device", 3)])
def test_verify_signed_statement_of_unexpected_shape(tmp_path: Path, field: str, value: object) -> None:
    from test_evidence import make_statement

    from edgegate.report.evidence import generate_keypair, load_signing_key, sign_statement

    pair = generate_keypair(tmp_path / "k")
    statement = make_statement([])
    statement["predicate"][field] = value
    bundle = tmp_path / "b.intoto.json"
    bundle.write_text(json.dumps(sign_statement(statement, load_signing_key(pair.private_path))))
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path))
    assert result.exit_code in (1, 2), result.output  # invalid (1) or unreadable (2); never a crash
    _one_line(result, result.exit_code, "invalid: " if result.exit_code == 1 else "error: ")
    assert result.stdout == ""


def test_internal_error_is_one_line_exit_4_with_a_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgegate.report.runs as runs

    def bug(*_a: object, **_k: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(runs, "runs_frame", bug)
    line = _one_line(_invoke("runs", "list", "--db", f"sqlite:///{tmp_path / 'eg.db'}"), 4)
    logs = list((tmp_path / "home" / "logs").glob("edgegate-error-*.log"))
    assert len(logs) == 1
    assert line == f"error: internal error: ZeroDivisionError: a bug (traceback in {logs[0]}); please report it"
    assert "Traceback" in logs[0].read_text() and "a bug" in logs[0].read_text()


def test_gate_failure_is_the_only_exit_1() -> None:
    from edgegate.cli import EXIT_GATE_FAILED, EXIT_INPUT, EXIT_INTERNAL, EXIT_TARGET
    from edgegate.errors import EdgeGateError, EnvironmentFailure, GateFailure, InternalError

    assert (EXIT_GATE_FAILED, EXIT_INPUT, EXIT_TARGET, EXIT_INTERNAL) == (1, 2, 3, 4)
    assert GateFailure.exit_code == 1 and EnvironmentFailure.exit_code == 3 and InternalError.exit_code == 4
    ones = {c.__name__ for c in _subclasses(EdgeGateError) if c.exit_code == 1}
    assert ones <= {"GateFailure", "VerificationError"}  # verify: the bundle's own gate


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out
