"""Stored data stays whole (issue 15, section 3): concurrent first runs on a fresh database,
one golden per pipeline x device, files a later run reads written atomically and checked
against their digest, a cache that never removes an entry under a reader, run rows that do
not stay "running", and run directories that cannot collide across databases.

The races use real processes started together on a barrier, a handful of trials each.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import race_workers
from fakes.race_workers import race
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from edgegate.artifacts import ArtifactCache, sha256_file
from edgegate.cli import cli
from edgegate.db import ExperimentDB, RunRow
from edgegate.errors import EnvironmentFailure
from edgegate.packs.sample import Sample
from edgegate.results import RUN_KEY_FIELD, new_run_key, open_run_dir, run_dir
from edgegate.run.outputs import load_predictions, read_per_sample, write_variant_outputs

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"


# ---------------------------------------------------------------- goldens (the races: test_db_concurrency.py)


def test_claim_golden_keeps_an_existing_one(tmp_path: Path) -> None:
    db = ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")
    a, b = (db.start_run(invocation="i", pipeline="p", device="d", variant="fp32", model_digest=None,
                         pack_digest=None, config_digest=None) for _ in range(2))
    assert db.claim_golden("p", "d", a) == a
    assert db.claim_golden("p", "d", b) == a
    db.set_golden("p", "d", b)  # --rebaseline and `golden set` still replace it
    assert db.golden("p", "d") == b


# ---------------------------------------------------------------- the artifact cache


def test_cache_never_removes_an_entry_under_a_reader(tmp_path: Path) -> None:
    """Four processes race to build the same entries and read them meanwhile: no read may
    find a file gone (the old code removed the first builder's entry to put its own)."""
    failures = race(race_workers.build_and_read, [(str(tmp_path / "cache"), 12)] * 4)
    assert failures == [0, 0, 0, 0]


def test_cache_replaces_a_damaged_entry_by_rename(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    builds = []

    def build(d: Path) -> dict:
        builds.append(d)
        (d / "a.bin").write_bytes(b"whole")
        return {}

    first = cache.get_or_build("s", {"k": 1}, build)
    first.file("a.bin").write_bytes(b"damaged")
    again = cache.get_or_build("s", {"k": 1}, build)
    assert len(builds) == 2 and not again.hit
    assert again.path == first.path and again.file("a.bin").read_bytes() == b"whole"
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [first.key]  # no leftovers
    assert cache.get_or_build("s", {"k": 1}, build).hit and len(builds) == 2


# ---------------------------------------------------------------- files a later run reads


def _samples(n: int = 3) -> list[Sample]:
    return [Sample(f"s{i}", "eval", None, {}, f"{i:064x}", text=f"t{i}") for i in range(n)]


class _Scorer:
    name = "acc"


class _Score:
    per_sample = [{"ok": 1}, {"ok": 0}, {"ok": 1}]


def _write(home: Path, run_id: int, key: str = "k1") -> dict[str, Path]:
    d = open_run_dir(home, run_id, key)
    files = write_variant_outputs(
        d, {"g": {"x": np.ones((1, 3), np.float32)}}, ["g"], _samples(),
        [{"y": np.array([i], np.float32)} for i in range(3)], [_Scorer()], [_Score()],  # type: ignore[list-item]
    )
    return {kind.value: path for kind, _, path in files}


def test_predictions_checked_against_their_recorded_digest(tmp_path: Path) -> None:
    files = _write(tmp_path, 1)
    pred = files["predictions"]
    digest = sha256_file(pred)
    loaded = load_predictions(pred, _samples(), digest)
    assert loaded is not None and [float(p["y"][0]) for p in loaded] == [0.0, 1.0, 2.0]
    whole = pred.read_bytes()
    pred.write_bytes(whole[: len(whole) // 2])  # cut short (a full disk, a crash of an old version)
    assert load_predictions(pred, _samples(), digest) is None  # treated as missing: recomputed
    pred.write_bytes(whole.replace(b"1.0", b"7.0"))  # still valid JSON, not what was recorded
    assert load_predictions(pred, _samples(), digest) is None
    pred.unlink()
    assert load_predictions(pred, _samples(), digest) is None


def test_outputs_are_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (disk full) leaves no file under the final name for a later run."""
    import edgegate.artifacts as artifacts

    real = os.replace

    def full(src: str, dst: str) -> None:
        if str(dst).endswith("predictions.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        real(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", full)
    with pytest.raises(OSError):
        _write(tmp_path, 1)
    d = run_dir(tmp_path, 1, "k1")
    assert not (d / "predictions.json").exists()
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_unreadable_per_sample_records_are_one_line(tmp_path: Path) -> None:
    files = _write(tmp_path, 1)
    d = files["per_sample_scores"].parent
    assert read_per_sample(d) == {"acc": _Score.per_sample}
    files["per_sample_scores"].write_text('{"acc": [')
    with pytest.raises(EnvironmentFailure, match="per-sample records unreadable"):
        read_per_sample(d)


# ---------------------------------------------------------------- run directories


def test_run_directories_cannot_collide_across_databases(tmp_path: Path) -> None:
    """Run 2 of a fresh database and run 2 of an old one share a home, never a directory."""
    a, b = new_run_key(), new_run_key()
    assert a != b
    old, new = run_dir(tmp_path, 2, a), run_dir(tmp_path, 2, b)
    assert old != new and old.parent == new.parent == tmp_path / "runs"
    assert open_run_dir(tmp_path, 2, a) == old
    (old / "stale.onnx").write_bytes(b"another run's file")
    assert open_run_dir(tmp_path, 2, b) == new and list(new.iterdir()) == []
    with pytest.raises(FileExistsError):
        open_run_dir(tmp_path, 2, a)  # a run never takes over an existing directory


# ---------------------------------------------------------------- rows left running


def _stale_running_row(url: str) -> int:
    db = ExperimentDB(url)
    rid = db.start_run(invocation="i", pipeline="p", device="d", variant="int8", model_digest=None,
                       pack_digest=None, config_digest=None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with Session(db.engine) as s, s.begin():
        s.execute(update(RunRow).where(RunRow.id == rid).values(pid=int(dead.stdout), host=socket.gethostname()))
    db.engine.dispose()
    return rid


def test_runs_list_reads_a_database_it_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row left "running" on a full disk: `runs list` still lists it; the next writable
    open marks it aborted."""
    import sqlite3

    import edgegate.db.experiment as experiment

    url = f"sqlite:///{tmp_path / 'eg.db'}"
    rid = _stale_running_row(url)

    def full(_pid: int) -> bool:
        raise OperationalError("UPDATE runs", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(experiment, "pid_alive", full)
    result = CliRunner().invoke(cli, ["runs", "list", "--db", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["status"]) for r in json.loads(result.stdout)] == [(rid, "running")]
    monkeypatch.undo()
    assert ExperimentDB(url).get_run(rid).status == "aborted"


# ---------------------------------------------------------------- whole runs (slow)


def _options(tmp: Path, db: str = "eg.db", **kw):
    from edgegate.run.pipeline import RunOptions

    return RunOptions(device="cpu", db_url=f"sqlite:///{tmp / db}", home=tmp / "home", **kw)


def _first_run(barrier, tmp: str) -> tuple[int, int, int]:
    from edgegate.run.pipeline import run_pipeline

    barrier.wait()
    r = run_pipeline(MINI, _options(Path(tmp)))
    return r.baseline.run_id, r.golden_run_id, r.candidate.run_id


@pytest.mark.slow
def test_two_first_runs_at_once_compare_with_the_one_golden(tmp_path: Path) -> None:
    out = race(_first_run, [(str(tmp_path),)] * 2, timeout=1200)
    assert all(isinstance(o, tuple) for o in out), out
    db = ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")
    golden = db.golden("person_detect_mini", "cpu")
    assert {g for _, g, _ in out} == {golden}  # both compared with the stored golden
    assert {b for b, _, _ in out} == {golden}  # the loser's report shows the golden as its baseline
    for _, _, cand in out:
        assert db.get_run(cand).golden_run_id == golden


@pytest.mark.slow
def test_damaged_golden_predictions_and_a_fresh_database(tmp_path: Path) -> None:
    from edgegate.run.pipeline import run_pipeline

    first = run_pipeline(MINI, _options(tmp_path))
    pred = next(Path(a["path"]) for a in first.baseline.artifacts if a["kind"] == "predictions")
    pred.write_bytes(pred.read_bytes()[:100])  # truncated: every later run used to crash
    second = run_pipeline(MINI, _options(tmp_path))
    assert second.baseline.from_golden
    assert any("recomputed" in n for n in second.notes)

    # A fresh database on the same home: run ids start at 1 again, directories do not repeat.
    third = run_pipeline(MINI, _options(tmp_path, db="fresh.db"))
    db1, db2 = ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}"), ExperimentDB(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert third.candidate.run_id == first.candidate.run_id
    key1 = db1.get_run(first.candidate.run_id).details[RUN_KEY_FIELD]
    key3 = db2.get_run(third.candidate.run_id).details[RUN_KEY_FIELD]
    assert key1 != key3
    for run, db in ((first, db1), (third, db2)):
        key = db.get_run(run.candidate.run_id).details[RUN_KEY_FIELD]
        d = run_dir(tmp_path / "home", run.candidate.run_id, key)
        for a in run.candidate.artifacts:
            if a["kind"] in ("predictions", "per_sample_scores", "bench_inputs"):
                assert Path(a["path"]).parent == d
                assert hashlib.sha256(Path(a["path"]).read_bytes()).hexdigest() == a["sha256"]
    shutil.rmtree(tmp_path / "home" / "runs", ignore_errors=True)
