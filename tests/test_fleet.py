"""Fleets: the fleet file, the matrix, device locks, statuses (regression confirmation, flaky,
error, timeout), reports, the Dask executor, and one real small fleet on the host CPU.

Most cells here are ``ScriptedRunner`` cells (tests/fakes/fleet_cells.py): they write the
database as real cells do, in milliseconds, with a scripted behaviour per night and attempt.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.fleet_cells import ScriptedRunner
from sqlalchemy.orm import Session

from edgegate.db import ExperimentDB, RunRow
from edgegate.errors import SpecError
from edgegate.fleet.matrix import expand_matrix
from edgegate.fleet.model import CellStatus, FleetOptions
from edgegate.fleet.run import run_fleet
from edgegate.fleet.spec import load_fleet
from edgegate.fleet.executors import DeviceBusy, SubprocessRunner, device_lock
from edgegate.fleet.report import render_fleet_markdown
from edgegate.fleet.store import FleetStore

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MINI = FIXTURES / "pipelines" / "person_detect_mini.yaml"
STUB = ROOT / "tests" / "fakes" / "fleet_cells.py"


def _fleet(tmp: Path, body: str, devices: dict[str, list[str]] | None = None) -> Path:
    """A fleet file in tmp, with a devices/ dir of cpu-kind devices {name: tags}."""
    ddir = tmp / "devices"
    ddir.mkdir(exist_ok=True)
    for name, tags in (devices or {"board-1": ["lab", "rb5"], "board-2": ["lab", "rb5"], "sim": ["emulator"]}).items():
        (ddir / f"{name}.yaml").write_text(f"name: {name}\nkind: cpu\ntags: [{', '.join(tags)}]\n")
    path = tmp / "fleet.yaml"
    path.write_text(body + ("" if "devices_dir:" in body else "devices_dir: devices\n"))
    return path


def _opts(tmp: Path, runner=None, **kw) -> FleetOptions:
    return FleetOptions(db_url=f"sqlite:///{tmp / 'eg.db'}", home=tmp / "home", runner=runner,
                        out_dir=kw.pop("out_dir", None), **kw)


BASIC = f"""name: nightly
pipelines: [{MINI}]
devices: ["tag:lab", sim]
concurrency: 3
"""


# ----------------------------------------------------------------------------- fleet file


def test_matrix_by_name_and_tag_with_exclude(tmp_path: Path) -> None:
    path = _fleet(tmp_path, f"""name: nightly
pipelines: [{MINI}, {ROOT / 'pipelines' / 'person_detect.yaml'}]
devices: ["tag:rb5", sim, board-1]
exclude: [{{pipeline: person_detect, device: sim}}]
""")
    cells, notes = expand_matrix(load_fleet(path))
    # interleaved by device, each device once even when named twice
    assert [c.id for c in cells] == [
        "person_detect_mini@board-1", "person_detect_mini@board-2", "person_detect_mini@sim",
        "person_detect@board-1", "person_detect@board-2",
    ]
    assert all(Path(c.device_ref).is_absolute() and c.error is None for c in cells)
    assert notes == []


@pytest.mark.parametrize(("body", "message"), [
    ("name: n\npipelines: [x.yaml]\ndevices: [sim]\n", "fleet.yaml:2: pipelines: file not found: {tmp}/x.yaml (paths are relative to the fleet file)"),
    (f"name: n\npipelines: [{MINI}]\ndevices: [sim]\nconcurency: 2\n", "fleet.yaml:4: concurency: unknown field 'concurency'"),
    (f"name: n\npipelines: [{MINI}]\ndevices:\n  - sim\n  - 'tag:gpu'\n", "fleet.yaml:5: devices[1]: tag 'gpu' matches no device in {tmp}/devices (tags: emulator, lab, rb5)"),
    (f"name: n\npipelines: [{MINI}]\ndevices: [sim, bord-1]\n", "fleet.yaml:3: devices[1]: unknown device 'bord-1' (did you mean 'board-1' or 'board-2'?); known: board-1, board-2, sim"),
    (f"name: n\npipelines: [{MINI}]\ndevices: [sim]\nwatch: [map5]\n", "fleet.yaml:4: watch: unknown metric 'map5' (did you mean 'map50' or 'map50_95'?)"),
    (f"name: n\npipelines: [{MINI}]\ndevices: [sim]\nconcurrency: 0\n", "fleet.yaml:4: concurrency: input should be greater than or equal to 1"),
])
def test_fleet_file_errors_name_file_line_and_field(tmp_path: Path, monkeypatch, body: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = _fleet(tmp_path, body)
    with pytest.raises(SpecError) as err:
        expand_matrix(load_fleet(path.name))
    assert str(err.value).startswith(message.format(tmp=tmp_path)), str(err.value)


# ----------------------------------------------------------------------------- device locks


def _hold(lock_dir: str, log: str, hold_s: float) -> None:
    with device_lock(lock_dir, "board-1", timeout_s=30):
        start = time.time()
        time.sleep(hold_s)
        with open(log, "a") as f:
            f.write(json.dumps([os.getpid(), start, time.time()]) + "\n")


def test_device_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    log = tmp_path / "held.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hold, args=(str(tmp_path / "locks"), str(log), 0.3)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    spans = sorted(json.loads(line)[1:] for line in log.read_text().splitlines())
    assert len(spans) == 3
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans


def test_device_lock_times_out_with_the_holder_named(tmp_path: Path) -> None:
    with device_lock(tmp_path, "board-1", timeout_s=5, holder="fleet a"):
        with pytest.raises(DeviceBusy, match=r"device board-1: lock .*board-1.lock held by pid \d+ on .* \(fleet a\)"):
            with device_lock(tmp_path, "board-1", timeout_s=0.3):
                pass
    with device_lock(tmp_path, "board-1", timeout_s=0.3):  # released
        pass


# ----------------------------------------------------------------------------- statuses


def test_fleet_runs_cells_concurrently_never_two_on_one_device(tmp_path: Path) -> None:
    path = _fleet(tmp_path, f"""name: nightly
pipelines: [{MINI}, {ROOT / 'pipelines' / 'person_detect.yaml'}]
devices: ["tag:lab", sim]
concurrency: 3
""")
    record = tmp_path / "intervals.jsonl"
    result = run_fleet(path, _opts(tmp_path, ScriptedRunner(sleep_s=0.4, record=str(record)), write_reports=False))
    assert result.exit_code == 0 and [c.status for c in result.cells] == [CellStatus.PASSED] * 6
    spans = [json.loads(line) for line in record.read_text().splitlines()]
    by_device: dict[str, list] = {}
    for dev, start, end in spans:
        by_device.setdefault(dev, []).append((start, end))
    for dev, s in by_device.items():
        s.sort()
        assert all(a[1] <= b[0] for a, b in zip(s, s[1:])), f"two cells at once on {dev}"
    # ...while different devices did overlap: 6 cells x 0.4 s in well under 6 x 0.4 s
    assert result.wall_s < 6 * 0.4
    assert all(Path(tmp_path / "home" / "locks" / f"{d}.lock").exists() for d in by_device)


def test_regression_confirmed_flaky_and_broken_cells(tmp_path: Path) -> None:
    path = _fleet(tmp_path, f"""name: nightly
pipelines: [{MINI}, {ROOT / 'pipelines' / 'person_detect.yaml'}]
devices: ["tag:lab", sim]
concurrency: 3
""")
    night1 = run_fleet(path, _opts(tmp_path, ScriptedRunner(night=1)))
    assert night1.exit_code == 0
    assert {c.reason for c in night1.cells} == {"gates pass; no previous night to compare"}
    plan = {
        "person_detect_mini@board-1": {1: "slow", 2: "slow"},  # regressed, confirmed
        "person_detect_mini@board-2": {1: "slow", 2: "ok"},    # flaky
        "person_detect_mini@sim": {1: "bad", 2: "bad"},        # gates newly fail, confirmed
        "person_detect@board-1": {1: "error"},                 # target error
        "person_detect@board-2": {1: "boom"},                  # the runner itself raises
    }
    night2 = run_fleet(path, _opts(tmp_path, ScriptedRunner(night=2, plan=plan)))
    status = {c.cell: c for c in night2.cells}
    assert {k: v.status.value for k, v in status.items()} == {
        "person_detect_mini@board-1": "regressed", "person_detect_mini@board-2": "flaky",
        "person_detect_mini@sim": "failed", "person_detect@board-1": "error",
        "person_detect@board-2": "error", "person_detect@sim": "passed",
    }
    assert night2.exit_code == 1
    regressed = status["person_detect_mini@board-1"]
    prev = night1.cells[[c.cell for c in night1.cells].index("person_detect_mini@board-1")].final.candidate_run_id
    assert regressed.previous_run_id == prev
    assert regressed.reason == (f"regressed vs run {prev}: inference_time_ms, latency_min_ms (confirmed by 1 rerun)")
    assert len(regressed.attempts) == 2 and all(a.vs_previous["comparison_id"] for a in regressed.attempts)
    # a latency regression is re-timed interleaved before it counts; scripted runs stored no
    # compiled graphs, so that is said and the stored comparison stands
    assert all(a.vs_previous["rebench"].startswith("not possible: --rebench: run ") for a in regressed.attempts)
    assert status["person_detect_mini@board-2"].reason.endswith("attempt 2 did not repeat it")
    assert status["person_detect_mini@sim"].reason.startswith("gates failed: map50 >= 0.8; regressed vs run")
    assert status["person_detect@board-1"].reason == "target failed: device offline"
    assert status["person_detect@board-2"].reason == "RuntimeError: runner blew up"
    assert len(status["person_detect@sim"].attempts) == 1
    # night 3: the sim cell fails its gates again: known failure, no rerun; the flaky cell
    # compares against night 2's clean rerun.
    night3 = run_fleet(path, _opts(tmp_path, ScriptedRunner(night=3, plan={"person_detect_mini@sim": {1: "bad"}})))
    sim = next(c for c in night3.cells if c.cell == "person_detect_mini@sim")
    assert sim.status is CellStatus.FAILED and len(sim.attempts) == 1
    assert sim.reason == "gates failed (as on the previous night): map50 >= 0.8" and sim.known_failure
    flaky2 = next(c for c in night2.cells if c.cell == "person_detect_mini@board-2")
    assert next(c for c in night3.cells if c.cell == flaky2.cell).previous_run_id == flaky2.final.candidate_run_id
    # the history: three fleet runs, the trend of one cell over them
    store = FleetStore(ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}"))
    assert [h.status for h in store.history("nightly", "person_detect_mini", "board-1", 14)] == [
        "passed", "regressed", "passed"]
    # a known failure is reported but does not fail the job again (known_failures_fail: false)
    assert [r["exit_code"] for r in store.fleet_runs("nightly")] == [0, 1, 0]


def test_confirm_reruns_zero_reports_at_once(tmp_path: Path) -> None:
    path = _fleet(tmp_path, BASIC.replace("concurrency: 3", "concurrency: 3\nconfirm_reruns: 0"))
    run_fleet(path, _opts(tmp_path, ScriptedRunner(night=1), write_reports=False))
    night2 = run_fleet(path, _opts(tmp_path, ScriptedRunner(night=2, plan={"person_detect_mini@sim": {1: "slow"}}),
                                   write_reports=False))
    sim = next(c for c in night2.cells if c.cell == "person_detect_mini@sim")
    assert sim.status is CellStatus.REGRESSED and len(sim.attempts) == 1
    assert sim.reason.endswith("(not rerun: confirm_reruns 0)")


def test_watch_limits_what_counts(tmp_path: Path) -> None:
    path = _fleet(tmp_path, BASIC + "watch: [map50]\n")
    run_fleet(path, _opts(tmp_path, ScriptedRunner(night=1), write_reports=False))
    night2 = run_fleet(path, _opts(tmp_path, ScriptedRunner(night=2, plan={"person_detect_mini@sim": {1: "slow"}}),
                                   write_reports=False))
    sim = next(c for c in night2.cells if c.cell == "person_detect_mini@sim")
    assert sim.status is CellStatus.PASSED
    assert sim.reason.endswith("neutral (regressed, not watched: inference_time_ms, latency_min_ms)")


@dataclass
class _RecordsToolchain:
    """A ScriptedRunner whose candidate runs record a toolchain, as run_variant does."""

    inner: ScriptedRunner
    toolchain: dict

    def __call__(self, task, attempt):
        a = self.inner(task, attempt)
        if a.candidate_run_id is not None:
            with Session(ExperimentDB(task.db_url).engine) as s, s.begin():
                row = s.get(RunRow, a.candidate_run_id)
                row.details = {**(row.details or {}), "toolchain": self.toolchain}
        return a


def test_toolchain_change_is_a_note_not_a_regression(tmp_path: Path) -> None:
    path = _fleet(tmp_path, BASIC)
    old, new = "2.44.0.260227120002", "2.45.0.260326154327"
    chain = {"qairt": old, "device": "Dragonwing RB3 Gen 2 Vision Kit", "client": "0.56.0"}
    run_fleet(path, _opts(tmp_path, _RecordsToolchain(ScriptedRunner(night=1), chain), write_reports=False))
    # night 2: AI Hub moved to a new QAIRT; one cell got slower, one now fails its gates
    plan = {"person_detect_mini@sim": {1: "slow"}, "person_detect_mini@board-1": {1: "bad", 2: "bad"}}
    night2 = run_fleet(path, _opts(tmp_path, _RecordsToolchain(ScriptedRunner(night=2, plan=plan), {**chain, "qairt": new})))
    status = {c.cell: c for c in night2.cells}
    slow = status["person_detect_mini@sim"]
    changed = f"not compared: toolchain changed (qairt '{old}' vs '{new}')"
    assert slow.status is CellStatus.PASSED and len(slow.attempts) == 1  # no confirmation rerun, no re-timing
    assert slow.reason == f"gates pass; vs run {slow.previous_run_id}: {changed}"
    vp = slow.final.vs_previous
    assert (vp["verdict"], vp["regressed"], vp["rebench"]) == (changed, [], "skipped: the toolchain changed")
    assert vp["toolchain_drift"] == {"qairt": [old, new]}
    stored = ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}").comparison(vp["comparison_id"])
    assert stored["notes"].startswith(f"toolchain drift: qairt '{old}' vs '{new}'; inference_time_ms: +")
    # the gates still decide
    bad = status["person_detect_mini@board-1"]
    assert bad.status is CellStatus.FAILED and bad.reason == "gates failed: map50 >= 0.8 (confirmed by 1 rerun)"
    assert night2.exit_code == 1
    assert f"| {changed} (run {slow.previous_run_id}) |" in (night2.out_dir / "fleet.md").read_text()
    # night 3 on the same new toolchain: compared again, and a slowdown counts
    night3 = run_fleet(path, _opts(tmp_path, _RecordsToolchain(
        ScriptedRunner(night=3, plan={"person_detect_mini@board-2": {1: "slow", 2: "slow"}}), {**chain, "qairt": new}),
        write_reports=False))
    again = next(c for c in night3.cells if c.cell == "person_detect_mini@board-2")
    assert again.status is CellStatus.REGRESSED


def test_invalid_pipeline_file_is_an_error_cell_the_rest_run(tmp_path: Path) -> None:
    path = _fleet(tmp_path, f"""name: nightly
pipelines: [{FIXTURES / 'fleet' / 'invalid.yaml'}, {MINI}]
devices: [sim]
""")
    result = run_fleet(path, _opts(tmp_path, ScriptedRunner()))
    bad, good = result.cells
    assert (bad.cell, bad.status, good.status) == ("invalid@sim", CellStatus.ERROR, CellStatus.PASSED)
    assert bad.reason.startswith(f"{FIXTURES / 'fleet' / 'invalid.yaml'}:12: gate: unknown field 'gate'")
    assert result.exit_code == 3


def _named_copy(tmp: Path, name: str) -> Path:
    """The mini pipeline under another name (the stub cell behaves by the file name)."""
    path = tmp / f"{name}.yaml"
    path.write_text(MINI.read_text().replace("name: person_detect_mini", f"name: {name}")
                    .replace("../packs/person_detect_mini", str(FIXTURES / "packs" / "person_detect_mini")))
    return path


def test_timeout_kills_the_cell_process_tree(tmp_path: Path) -> None:
    _named_copy(tmp_path, "hang")
    _named_copy(tmp_path, "crash")
    path = _fleet(tmp_path, f"name: nightly\npipelines: [hang.yaml, crash.yaml, {MINI}]\ndevices: [sim]\n"
                            "concurrency: 3\ntimeout_s: 5\n")
    runner = SubprocessRunner(command=(sys.executable, str(STUB)))
    t0 = time.monotonic()
    result = run_fleet(path, _opts(tmp_path, runner, out_dir=tmp_path / "out", write_reports=False))
    status = {c.cell: c for c in result.cells}
    assert status["hang@sim"].status is CellStatus.TIMEOUT
    assert status["hang@sim"].reason == "killed after the 5 s timeout"
    assert status["crash@sim"].status is CellStatus.ERROR
    assert status["crash@sim"].reason.startswith("cell process exited 70 without a result")
    assert status["person_detect_mini@sim"].status is CellStatus.PASSED
    child = int((tmp_path / "out" / "cells" / "hang-child.pid").read_text())
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert time.monotonic() - t0 < 30
    assert (tmp_path / "out" / "logs" / "hang@sim-attempt1.log").exists()


# ----------------------------------------------------------------------------- reports


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("reports")
    path = _fleet(tmp, BASIC)
    run_fleet(path, _opts(tmp, ScriptedRunner(night=1), out_dir=tmp / "n1"))
    plan = {"person_detect_mini@board-1": {1: "slow", 2: "slow"}, "person_detect_mini@board-2": {1: "error"},
            "person_detect_mini@sim": {1: "bad", 2: "bad"}}
    return run_fleet(path, _opts(tmp, ScriptedRunner(night=2, plan=plan), out_dir=tmp / "n2"))


def test_junit_has_a_testcase_per_cell_and_gate(two_nights) -> None:
    root = ET.parse(two_nights.reports["junit"]).getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    # 3 cells; the two measured cells have 2 gates each (the error cell has none)
    assert len(cases) == 3 + 2 * 2 == int(suite.get("tests"))
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("3", "1", "2")
    by_name = {c.get("name"): c for c in cases}
    assert by_name["board-1"].find("failure").get("type") == "regressed"
    assert by_name["sim"].find("failure").get("type") == "failed"
    assert by_name["sim gate: map50 >= 0.8"].find("failure") is not None
    assert by_name["board-2"].find("error").get("message") == "target failed: device offline"
    assert by_name["board-1 gate: inference_time_ms <= 100"].find("skipped") is not None
    assert {c.get("classname") for c in cases} == {"nightly.person_detect_mini"}


def test_markdown_and_json_reports(two_nights) -> None:
    md = two_nights.reports["markdown"].read_text()
    assert md.startswith(f"## EdgeGate fleet: nightly (run {two_nights.fleet_run_id})\n")
    assert "**Fleet verdict: FAIL (confirmed regression or newly failing gates) — 1 failed, 1 regressed, 1 error**" in md
    assert "| `person_detect_mini@board-1` | 📉 regressed |" in md
    assert "<details><summary>person_detect_mini@sim: failed</summary>" in md
    data = json.loads(two_nights.reports["json"].read_text())
    assert data["schema"] == "https://edgegate.dev/fleet-report/v1" and data["exit_code"] == 1
    assert data["counts"] == {"passed": 0, "failed": 1, "regressed": 1, "flaky": 0, "error": 1, "timeout": 0}
    cell = next(c for c in data["cells"] if c["cell"] == "person_detect_mini@board-1")
    assert [p["status"] for p in cell["trend"]] == ["passed", "regressed"]
    assert cell["trend_metrics"] == {"latency": "inference_time_ms", "quality": "map50"}
    assert cell["trend"][1]["latency_ms"] > 1.4 * cell["trend"][0]["latency_ms"]
    assert set(cell["latency_samples"]["candidate"]["graphs"]) == {"pnet", "rnet", "onet"}
    assert cell["latency_samples"]["baseline"]["variant"] == "fp32"
    assert "password" not in json.dumps(data)
    assert render_fleet_markdown(data) == md


def test_html_report_has_plots(two_nights) -> None:
    page = two_nights.reports["html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    # per measured cell: a trend plot and a distribution plot; the error cell has a trend (night 1)
    assert page.count('src="data:image/png;base64,') == 2 + 2 + 1
    assert "person_detect_mini@board-1 trend" in page and "latency distributions" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched


# ----------------------------------------------------------------------------- Dask


def test_dask_cluster_runs_each_cell_on_the_worker_owning_its_device(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from distributed import Client, Nanny, Scheduler, SpecCluster

    from edgegate.fleet.executors import DaskExecutor

    workers = {
        "lab-a": {"cls": Nanny, "options": {"nthreads": 2, "resources": {"device-board-1": 1, "device-sim": 1}}},
        "lab-b": {"cls": Nanny, "options": {"nthreads": 2, "resources": {"device-board-2": 1}}},
    }
    path = _fleet(tmp_path, BASIC, {"board-1": ["lab"], "board-2": ["lab"], "sim": ["emulator"], "board-3": ["lab"]})
    with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                     asynchronous=False) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        owner = {}
        for addr, info in client.scheduler_info(n_workers=-1)["workers"].items():
            for res in info["resources"]:
                owner[res.removeprefix("device-")] = pids[addr]
        result = run_fleet(path, _opts(tmp_path, ScriptedRunner(sleep_s=0.2), executor=DaskExecutor(client)))
    status = {c.cell: c for c in result.cells}
    assert status["person_detect_mini@board-3"].status is CellStatus.ERROR
    assert status["person_detect_mini@board-3"].reason.startswith(
        "no Dask worker advertises resource device-board-3 (start the board's host worker with "
        "--resources 'device-board-3=1'")
    for dev in ("board-1", "board-2", "sim"):
        cell = status[f"person_detect_mini@{dev}"]
        assert cell.status is CellStatus.PASSED, cell.reason
        assert cell.worker.endswith(f":{owner[dev]}")  # ran in the process of the worker owning the board
    assert result.executor.startswith("dask ")


# ----------------------------------------------------------------------------- a real fleet


@pytest.mark.slow
def test_real_fleet_on_the_host_cpu_through_the_cli(tmp_path: Path) -> None:
    """The mini pipeline on the CPU and a pipeline that fails at run time, as `edgegate fleet run`."""
    summary = tmp_path / "summary.md"
    env = {**os.environ, "EDGEGATE_HOME": str(tmp_path / "home")}
    env.pop("EDGEGATE_DB", None)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "edgegate"), "fleet", "run", str(FIXTURES / "fleet" / "real.yaml"),
         "--db", f"sqlite:///{tmp_path / 'eg.db'}", "--out", str(tmp_path / "out"), "--summary-out", str(summary),
         "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr  # an error cell, no regression
    assert "Fleet verdict: ERROR (cells did not finish) — 1 passed, 1 error" in proc.stdout
    data = json.loads((tmp_path / "out" / "fleet.json").read_text())
    mini, broken = data["cells"]
    assert (mini["cell"], mini["status"]) == ("fleet_mini_cpu@cpu", "passed")
    assert [g["status"] for g in mini["gates"]] == ["pass", "pass"]
    assert mini["latency_samples"]["candidate"]["source"] == "host-cpu"
    assert (broken["cell"], broken["status"]) == ("fleet_broken@cpu", "error")
    assert "no_such_module" in broken["reason"]
    assert summary.read_text().startswith("## EdgeGate fleet: fleet_real")
    db = ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")
    assert all(r.status != "running" for r in db.list_runs())
    assert db.golden("fleet_mini_cpu", "cpu") == mini["baseline_run_id"]


def test_stopping_the_fleet_ends_its_cell_processes(tmp_path: Path) -> None:
    """SIGTERM to the fleet (a CI timeout) ends the running cells' process trees too."""
    _named_copy(tmp_path, "hang")
    path = _fleet(tmp_path, "name: nightly\npipelines: [hang.yaml]\ndevices: [sim]\ntimeout_s: 300\n")
    script = (
        "import signal, sys; from pathlib import Path\n"
        "from edgegate.fleet.model import FleetOptions\n"
        "from edgegate.fleet.run import run_fleet\n"
        "from edgegate.fleet.executors import SubprocessRunner\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
        f"run_fleet({str(path)!r}, FleetOptions(db_url={f'sqlite:///{tmp_path}/eg.db'!r}, home=Path({str(tmp_path / 'home')!r}),"
        f" out_dir=Path({str(tmp_path / 'out')!r}), runner=SubprocessRunner(command=({sys.executable!r}, {str(STUB)!r}))))\n"
    )
    fleet = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    pid_file = tmp_path / "out" / "cells" / "hang-child.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    fleet.terminate()
    assert fleet.wait(30) == 143
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    runs = FleetStore(ExperimentDB(f"sqlite:///{tmp_path / 'eg.db'}")).fleet_runs("nightly")
    assert [r["status"] for r in runs] == ["aborted"]
