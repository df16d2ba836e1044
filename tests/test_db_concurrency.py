"""ExperimentDB under concurrent writers, on SQLite (the default: WAL + busy timeout) and on a
real PostgreSQL server the suite starts (tests/fakes/postgres.py): nothing may be lost.
"""

from __future__ import annotations

import os
from pathlib import Path

from fakes import race_workers
from fakes.db_writers import GRAPHS, METRICS, concurrent_writes
from fakes.race_workers import race
from fakes.fleet_cells import ScriptedRunner
from fakes.postgres import postgres_server  # noqa: F401  (a fixture)
from sqlalchemy import create_engine, func, select, text

from edgegate.db import ExperimentDB, LatencySampleRow, MetricRow, RunRow, StoredMetric
from edgegate.fleet.model import CellStatus, FleetOptions
from edgegate.fleet.run import run_fleet
from edgegate.fleet.store import FleetCellRow, FleetStore

WORKERS, RUNS, SAMPLES = 8, 12, 30


def _count(url: str, table) -> int:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()
    finally:
        engine.dispose()


def _check_nothing_lost(url: str) -> None:
    totals = concurrent_writes(url, workers=WORKERS, runs=RUNS, samples=SAMPLES)
    assert totals["runs"] == WORKERS * RUNS
    assert _count(url, RunRow) == WORKERS * RUNS
    assert _count(url, MetricRow) == WORKERS * RUNS * len(METRICS)
    assert _count(url, LatencySampleRow) == WORKERS * RUNS * len(GRAPHS) * SAMPLES
    db = ExperimentDB(url)
    runs = db.list_runs(limit=1000)
    assert {r.status for r in runs} == {"passed"}
    # every worker's last run per pipeline is its golden
    assert len(db.goldens()) == WORKERS * 2
    assert sorted({r.invocation for r in runs}) == sorted(f"w{w}-{i}" for w in range(WORKERS) for i in range(RUNS))


def test_sqlite_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    _check_nothing_lost(f"sqlite:///{tmp_path / 'eg.db'}")


def test_postgres_round_trip_with_a_bare_url(postgres_server) -> None:  # noqa: F811
    url = postgres_server.database("roundtrip").replace("postgresql+psycopg://", "postgresql://")
    db = ExperimentDB(url)  # psycopg 3 is used for a bare postgresql:// URL
    assert db.engine.dialect.name == "postgresql" and db.engine.dialect.driver == "psycopg"
    rid = db.start_run(invocation="x", pipeline="p", device="d", variant="int8", model_digest=None,
                       pack_digest="sha256:p", config_digest=None, details={"k": [1, 2]})
    db.add_metrics(rid, [StoredMetric("map50", 0.5, "ratio", "computed")])
    db.add_latency_samples(rid, "g", [1.5, 2.5], "host-cpu")
    db.finish_run(rid, "passed")
    db.set_golden("p", "d", rid)
    db.set_golden("p", "d", rid)  # update path
    run = db.get_run(rid)
    assert (run.status, run.details, run.ended_at is not None) == ("passed", {"k": [1, 2]}, True)
    assert db.metrics(rid)["map50"].value == 0.5 and db.latency_samples(rid) == {"g": [1.5, 2.5]}
    assert db.golden("p", "d") == rid


def test_postgres_concurrent_writers_lose_nothing(postgres_server) -> None:  # noqa: F811
    _check_nothing_lost(postgres_server.database("writers"))


def _open(url: str) -> str:
    try:
        ExperimentDB(url)
        FleetStore(ExperimentDB(url))
        return "ok"
    except Exception as exc:  # the test wants the message, not a traceback in a child
        return f"{type(exc).__name__}: {exc}"


def test_postgres_fresh_database_opened_by_many_processes_at_once(postgres_server) -> None:  # noqa: F811
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    url = postgres_server.database("fresh")
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork")) as pool:
        assert list(pool.map(_open, [url] * WORKERS)) == ["ok"] * WORKERS  # no CREATE TABLE race


def test_fleet_on_postgres_parallel_workers(postgres_server, tmp_path: Path) -> None:  # noqa: F811
    """16 cells, 8 at once, every cell writing its runs while the coordinator writes cell rows."""
    url = postgres_server.database("fleet")
    ddir = tmp_path / "devices"
    ddir.mkdir()
    for i in range(8):
        (ddir / f"board-{i}.yaml").write_text(f"name: board-{i}\nkind: cpu\ntags: [lab]\n")
    root = Path(__file__).resolve().parents[1]
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"name: pg\npipelines: [{root / 'tests/fixtures/pipelines/person_detect_mini.yaml'}, "
                     f"{root / 'pipelines/person_detect.yaml'}]\ndevices: ['tag:lab']\ndevices_dir: devices\n"
                     "concurrency: 8\n")
    opts = FleetOptions(db_url=url, home=tmp_path / "home", runner=ScriptedRunner(sleep_s=0.1), write_reports=False)
    for night in (1, 2):
        result = run_fleet(fleet, opts)
        assert [c.status for c in result.cells] == [CellStatus.PASSED] * 16, [c.reason for c in result.cells]
    assert _count(url, FleetCellRow) == 32
    # per night and cell: one candidate; night 1 also one golden per cell
    assert _count(url, RunRow) == 16 * 2 + 16
    assert _count(url, LatencySampleRow) == (16 * 3) * 3 * 40
    engine = create_engine(url)
    with engine.connect() as conn:
        compared = conn.execute(text("select count(*) from comparisons where name like 'fleet pg:%'")).scalar_one()
    engine.dispose()
    assert compared == 16  # night 2 compared every cell with night 1
    assert os.path.isdir(tmp_path / "home" / "locks")


# Issue 15: a fresh SQLite database opened by several processes at once (a fleet starts
# its cells together), and first runs racing for the golden. Real processes, a few trials.


def test_concurrent_first_opens_of_a_fresh_sqlite_db(tmp_path: Path) -> None:
    for trial in range(4):
        url = f"sqlite:///{tmp_path / f't{trial}' / 'eg.db'}"
        assert race(race_workers.open_db, [(url,)] * 4) == ["ok"] * 4, f"trial {trial}"


def test_two_first_baselines_one_golden(tmp_path: Path) -> None:
    """Each racer measured a baseline; exactly one becomes the golden, and every racer is
    told which (the losers then compare against it)."""
    for trial in range(3):
        url = f"sqlite:///{tmp_path / f'eg{trial}.db'}"
        ExperimentDB(url)  # the tables exist: this race is about the golden only
        out = race(race_workers.claim_golden, [(url, w) for w in range(4)])
        assert all(isinstance(o, tuple) for o in out), out
        winners = {golden for _, golden in out}
        assert len(winners) == 1
        (winner,) = winners
        assert winner in {rid for rid, _ in out}
        assert ExperimentDB(url).golden("p", "d") == winner
