"""ExperimentDB on SQLite in tmp_path: runs, measurements, artifacts, goldens, recovery."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from edgegate.db import ExperimentDB, RunRow, StoredMetric
from edgegate.errors import InputError

# Above Linux's largest possible pid_max (2**22): no process can have this pid.
DEAD_PID = 2**22 + 12345


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/x.db"


@pytest.fixture
def db(url: str) -> ExperimentDB:
    return ExperimentDB(url)


def _start(db: ExperimentDB, *, pipeline: str = "person_detect", device: str = "htp-sim",
           variant: str = "int8", invocation: str = "inv-1") -> int:
    return db.start_run(
        invocation=invocation, pipeline=pipeline, device=device, variant=variant,
        model_digest="sha256:model", pack_digest="sha256:pack", config_digest="sha256:config",
    )


def _set_pid(db: ExperimentDB, run_id: int, pid: int, host: str | None = None) -> None:
    with Session(db.engine) as s, s.begin():
        row = s.get(RunRow, run_id)
        assert row is not None
        row.pid = pid
        if host is not None:
            row.host = host


# ----------------------------------------------------------------------------- runs


def test_start_run_creates_running_row(db: ExperimentDB) -> None:
    run_id = db.start_run(
        invocation="inv-1", pipeline="person_detect", device="htp-sim", variant="fp32",
        model_digest="sha256:m", pack_digest="sha256:p", config_digest="sha256:c", golden_run_id=7,
    )
    run = db.get_run(run_id)
    assert run is not None
    assert (run.id, run.invocation, run.pipeline, run.device, run.variant, run.status) == (
        run_id, "inv-1", "person_detect", "htp-sim", "fp32", "running"
    )
    assert (run.model_digest, run.pack_digest, run.config_digest, run.golden_run_id) == (
        "sha256:m", "sha256:p", "sha256:c", 7
    )
    assert run.ended_at is None
    assert run.error is None
    assert run.report_path is None
    assert isinstance(run.started_at, dt.datetime)


def test_finish_run_round_trip(db: ExperimentDB) -> None:
    run_id = _start(db)
    db.finish_run(run_id, "failed", error="gate failed: recall >= 0.95", report_path="/r/1.json",
                  model_digest="sha256:new")
    run = db.get_run(run_id)
    assert run is not None
    assert run.status == "failed"
    assert run.error == "gate failed: recall >= 0.95"
    assert run.report_path == "/r/1.json"
    assert run.model_digest == "sha256:new"
    assert run.ended_at is not None
    assert run.ended_at >= run.started_at


def test_finish_run_keeps_digest_and_report_path_when_not_given(db: ExperimentDB) -> None:
    run_id = _start(db)
    db.set_report_path(run_id, "/r/2.json")
    db.finish_run(run_id, "passed")
    run = db.get_run(run_id)
    assert run is not None
    assert (run.status, run.error, run.report_path, run.model_digest) == (
        "passed", None, "/r/2.json", "sha256:model"
    )


def test_finish_run_merges_details(db: ExperimentDB) -> None:
    run_id = db.start_run(
        invocation="i", pipeline="p", device="d", variant="int8", model_digest=None, pack_digest=None,
        config_digest=None, details={"a": 1, "b": 2},
    )
    db.finish_run(run_id, "completed", details={"b": 3, "c": 4})
    with Session(db.engine) as s:
        row = s.get(RunRow, run_id)
        assert row is not None
        assert row.details == {"a": 1, "b": 3, "c": 4}


def test_get_run_unknown_id_is_none(db: ExperimentDB) -> None:
    assert db.get_run(999) is None


def test_list_runs_newest_first_with_filters(db: ExperimentDB) -> None:
    a = _start(db, pipeline="p1", device="cpu")
    b = _start(db, pipeline="p2", device="cpu")
    c = _start(db, pipeline="p1", device="htp-sim")
    assert [r.id for r in db.list_runs()] == [c, b, a]
    assert [r.id for r in db.list_runs(pipeline="p1")] == [c, a]
    assert [r.id for r in db.list_runs(device="cpu")] == [b, a]
    assert [r.id for r in db.list_runs(pipeline="p1", device="cpu")] == [a]
    assert [r.id for r in db.list_runs(limit=2)] == [c, b]


def test_runs_survive_reopening(url: str, db: ExperimentDB) -> None:
    run_id = _start(db)
    db.finish_run(run_id, "completed")
    again = ExperimentDB(url)
    run = again.get_run(run_id)
    assert run is not None
    assert run.status == "completed"


# ----------------------------------------------------------------------------- measurements


def test_metrics_round_trip_in_insertion_order(db: ExperimentDB) -> None:
    run_id = _start(db)
    other = _start(db)
    stored = [
        StoredMetric("map50", 0.875, "ratio", "computed"),
        StoredMetric("inference_time_ms", 12.5, "ms", "host-emulator"),
        StoredMetric("npu_nodes", 17, None, "computed"),
    ]
    db.add_metrics(run_id, stored)
    db.add_metrics(other, [StoredMetric("map50", 0.5, "ratio", "computed")])
    got = db.metrics(run_id)
    assert list(got) == ["map50", "inference_time_ms", "npu_nodes"]
    assert list(got.values()) == [
        StoredMetric("map50", 0.875, "ratio", "computed"),
        StoredMetric("inference_time_ms", 12.5, "ms", "host-emulator"),
        StoredMetric("npu_nodes", 17.0, None, "computed"),
    ]
    assert isinstance(got["npu_nodes"].value, float)
    assert db.metrics(other) == {"map50": StoredMetric("map50", 0.5, "ratio", "computed")}
    assert db.metrics(999) == {}


def test_latency_samples_round_trip_in_order(db: ExperimentDB) -> None:
    run_id = _start(db)
    pnet = [3.5, 1.25, 2.0, 9.75, 0.5]
    onet = [7.0, 6.0]
    db.add_latency_samples(run_id, "pnet", pnet, "host-emulator")
    db.add_latency_samples(run_id, "onet", onet, "host-emulator")
    got = db.latency_samples(run_id)
    assert got == {"onet": onet, "pnet": pnet}
    assert got["pnet"] == [3.5, 1.25, 2.0, 9.75, 0.5]  # timed order, not sorted
    assert db.latency_samples(999) == {}


def test_latency_sample_processes(db: ExperimentDB) -> None:
    run_id = _start(db)
    db.add_latency_samples(run_id, "pnet", [1.0, 2.0, 3.0, 4.0], "host-cpu", [0, 0, 1, 1])
    db.add_latency_samples(run_id, "onet", [5.0, 6.0], "host-cpu")  # no process ids
    assert db.latency_processes(run_id) == {"pnet": [0, 0, 1, 1]}
    with pytest.raises(ValueError, match="3 process ids for 2 samples"):
        db.add_latency_samples(run_id, "rnet", [1.0, 2.0], "host-cpu", [0, 1, 2])


def test_database_from_before_process_ids_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    ExperimentDB(f"sqlite:///{path}")
    con = sqlite3.connect(path)  # make it look like an older EdgeGate's: no process column
    con.execute("DROP TABLE latency_samples")
    con.execute("CREATE TABLE latency_samples (id INTEGER PRIMARY KEY, run_id INTEGER, graph VARCHAR(120), "
                "idx INTEGER, value_ms FLOAT, source VARCHAR(32))")
    con.execute("INSERT INTO runs (id, invocation, pipeline, device, variant, status, started_at, pid, host) "
                "VALUES (1, 'i', 'p', 'd', 'int8', 'completed', '2026-01-01', 1, 'h')")
    con.execute("INSERT INTO latency_samples (run_id, graph, idx, value_ms, source) VALUES (1, 'g', 0, 2.5, 'host-cpu')")
    con.commit()
    con.close()
    db = ExperimentDB(f"sqlite:///{path}")
    assert db.latency_samples(1) == {"g": [2.5]}  # old rows kept
    assert db.latency_processes(1) == {}  # and known to have no process ids
    db.add_latency_samples(1, "h", [1.0], "host-cpu", [0])
    assert db.latency_processes(1) == {"h": [0]}
    ExperimentDB(f"sqlite:///{path}")  # opening again: the column is there, nothing to add


def test_artifacts_round_trip(db: ExperimentDB, tmp_path: Path) -> None:
    run_id = _start(db)
    blob = tmp_path / "pnet.onnx"
    blob.write_bytes(b"x" * 1234)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    missing = tmp_path / "gone.bin"
    db.add_artifact(run_id, "onnx-int8", "pnet", blob, digest)
    db.add_artifact(run_id, "report", None, missing, "0" * 64)
    assert db.artifacts(run_id) == [
        {"kind": "onnx-int8", "graph": "pnet", "path": str(blob), "sha256": digest, "size_bytes": 1234},
        {"kind": "report", "graph": None, "path": str(missing), "sha256": "0" * 64, "size_bytes": 0},
    ]
    assert db.artifacts(999) == []


# ----------------------------------------------------------------------------- goldens


def test_golden_set_replace_clear_list(db: ExperimentDB) -> None:
    r1, r2, r3, r4 = (_start(db) for _ in range(4))
    assert db.golden("person_detect", "htp-sim") is None
    assert db.goldens() == []

    db.set_golden("person_detect", "htp-sim", r1)
    assert db.golden("person_detect", "htp-sim") == r1
    (_, _, _, first_set_at), = db.goldens()

    db.set_golden("person_detect", "htp-sim", r2)  # replace
    assert db.golden("person_detect", "htp-sim") == r2
    db.set_golden("person_detect", "cpu", r3)
    db.set_golden("other", "cpu", r4)

    listed = db.goldens()
    assert [(p, d, r) for p, d, r, _ in listed] == [
        ("other", "cpu", r4),
        ("person_detect", "cpu", r3),
        ("person_detect", "htp-sim", r2),
    ]
    assert all(isinstance(t, dt.datetime) for *_, t in listed)
    assert listed[2][3] >= first_set_at
    assert [(p, d, r) for p, d, r, _ in db.goldens("person_detect")] == [
        ("person_detect", "cpu", r3),
        ("person_detect", "htp-sim", r2),
    ]

    assert db.clear_golden("person_detect", "htp-sim") == 1
    assert db.golden("person_detect", "htp-sim") is None
    assert db.golden("person_detect", "cpu") == r3
    assert db.clear_golden("person_detect", "htp-sim") == 0
    db.set_golden("person_detect", "htp-sim", r1)
    assert db.clear_golden("person_detect") == 2
    assert [(p, d, r) for p, d, r, _ in db.goldens()] == [("other", "cpu", r4)]


# ----------------------------------------------------------------------------- recovery


def test_run_of_dead_process_is_aborted_on_open(url: str, db: ExperimentDB) -> None:
    dead = _start(db)
    alive = _start(db)
    done = _start(db)
    db.finish_run(done, "completed")
    _set_pid(db, dead, DEAD_PID)
    _set_pid(db, done, DEAD_PID)

    reopened = ExperimentDB(url)
    run = reopened.get_run(dead)
    assert run is not None
    assert run.status == "aborted"
    assert run.error == "process exited without finishing the run"
    assert run.ended_at is not None
    # this process is alive: its run is left running
    assert reopened.get_run(alive).status == "running"  # type: ignore[union-attr]
    # a finished run is never touched
    finished = reopened.get_run(done)
    assert finished is not None
    assert (finished.status, finished.error) == ("completed", None)


def test_run_on_another_host_is_not_aborted(url: str, db: ExperimentDB) -> None:
    run_id = _start(db)
    _set_pid(db, run_id, DEAD_PID, host="some-other-host.invalid")
    run = ExperimentDB(url).get_run(run_id)
    assert run is not None
    assert (run.status, run.error, run.ended_at) == ("running", None, None)


def test_dead_pid_is_really_dead() -> None:
    # The recovery test above relies on this pid not existing.
    with pytest.raises(ProcessLookupError):
        os.kill(DEAD_PID, 0)


# ----------------------------------------------------------------------------- errors


def test_unknown_dialect_is_input_error() -> None:
    with pytest.raises(InputError) as info:
        ExperimentDB("nosuchdialect://x")
    assert info.value.exit_code == 2
    assert info.value.message.startswith("--db: cannot open database URL 'nosuchdialect://x': ")


def test_unparseable_url_is_input_error() -> None:
    with pytest.raises(InputError) as info:
        ExperimentDB("not a url")
    assert info.value.message.startswith("--db: cannot open database URL 'not a url': ")


def test_file_that_is_not_a_database_is_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not an sqlite database file" * 200)
    with pytest.raises(InputError) as info:
        ExperimentDB(f"sqlite:///{bad}")
    assert info.value.message.startswith(f"--db: cannot use database 'sqlite:///{bad}': DatabaseError: ")


def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    ExperimentDB(f"sqlite:///{tmp_path}/a/b/x.db")
    assert (tmp_path / "a" / "b" / "x.db").is_file()
