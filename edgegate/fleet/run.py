"""Nightly fleet checks: many pipelines on many devices, concurrently, with trends.

``run_fleet`` does, in order:

1. Load the fleet file (``fleet.spec``: pydantic, ``extra="forbid"``, errors with file:line:
   field) and expand the matrix (``fleet.matrix``): every pipeline x every device (by name or
   ``tag:<tag>``), less ``exclude``. A pipeline or device file that does not load becomes
   error cells; the rest run.
2. Open the ExperimentDB and the fleet tables (``fleet.store``); record the fleet run; find
   each cell's previous night (the last earlier fleet run of the same fleet that measured it).
3. Dispatch cells to the executor (``fleet.executors``: local threads or Dask), at most
   ``concurrency`` at once and never two on one device; each cell holds its device's lock
   while it runs.
4. In each cell (``execute_cell``, on whichever host runs it): run the pipeline in a subprocess
   (golden comparison and gates happen there), compare the candidate with the previous
   night's run, and when it regressed (a gate newly failing, or a metric regressed vs the
   previous night) run it again ``confirm_reruns`` times: confirmed -> failed / regressed,
   not confirmed -> flaky. A timeout or error ends the cell with that status. When the
   toolchain changed since the previous night (QAIRT, QNN SDK, the device that ran), the
   metrics are not counted as regressions (a note on the cell says what changed); the
   gates still decide.
5. Store every cell as it finishes, finish the fleet run, write the reports (``fleet.report``:
   terminal, Markdown, HTML with plots, JUnit XML, JSON) and return the exit code: 1 when any cell is
   a confirmed regression or newly fails its gates (a cell failing exactly as on the previous
   night is reported, and fails the job only with ``known_failures_fail``), else 3 when any
   cell errored or timed out, else 0 (flaky cells are reported, not failed).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

from edgegate.db import ExperimentDB, default_url
from edgegate.errors import EdgeGateError
from edgegate.fleet.executors import LocalExecutor, SubprocessRunner, device_lock, executor_for
from edgegate.fleet.matrix import expand_matrix
from edgegate.fleet.model import (
    FAILING_GATE,
    AttemptResult,
    Cell,
    CellResult,
    CellRunner,
    CellStatus,
    CellTask,
    Executor,
    FleetOptions,
    FleetResult,
    fleet_exit_code,
)
from edgegate.fleet.report import build_fleet_report, write_fleet_reports
from edgegate.fleet.spec import FleetSpec, load_fleet
from edgegate.fleet.store import FleetStore
from edgegate.metrics import MetricKind, get_metric
from edgegate.report.evidence import utc_timestamp

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- one cell


def _compare_previous(task: CellTask, a: AttemptResult) -> dict[str, Any] | None:
    """The attempt's candidate vs the previous night's (stored as a comparison)."""
    if task.previous_run_id is None or a.candidate_run_id is None:
        return None
    # compare and regression pull in the statistics and model stacks: only cells that have a
    # previous night to compare with import them.
    from edgegate.compare import parse_threshold_option
    from edgegate.regression import compare_runs
    from edgegate.toolchain import drift_text

    base = {"previous_run_id": task.previous_run_id}
    try:
        res = compare_runs(
            ExperimentDB(task.db_url), task.previous_run_id, a.candidate_run_id,
            threshold=parse_threshold_option(task.threshold), name=f"fleet {task.fleet}: {task.cell_id} #{a.attempt}",
            allow_toolchain_drift=True,
        )
    except EdgeGateError as exc:
        return {**base, "verdict": "not compared", "error": exc.message, "regressed": []}
    if res["toolchain_drift"]:
        # A new QAIRT / QNN SDK / device moves the numbers by itself: not the model's regression,
        # and re-timing last night's graphs on tonight's toolchain would not say whose it is. The
        # deltas stay in the stored comparison, not in the cell, where they would read as findings.
        return {
            **base, "comparison_id": res.get("comparison_id"), "rebench": "skipped: the toolchain changed",
            "verdict": f"not compared: toolchain changed ({drift_text(res['toolchain_drift'])})",
            "regressed": [], "ignored": [], "toolchain_drift": res["toolchain_drift"],
        }
    res, base["rebench"] = _rebench_latency(task, a, res)
    regressed = [n for n, m in res["metrics"].items() if m["status"] == "regressed"]
    counted = [n for n in regressed if (n in task.watch if task.watch is not None else _watched_by_default(n))]
    keep = ("baseline", "candidate", "delta", "relative", "status", "significant", "p_value")
    return {
        **base, "comparison_id": res.get("comparison_id"),
        "verdict": "regressed" if counted else ("improved" if res["verdict"] == "improved" else "neutral"),
        "regressed": counted, "ignored": [n for n in regressed if n not in counted],
        "metrics": {n: {k: m.get(k) for k in keep} for n, m in res["metrics"].items()},
    }


def _rebench_latency(task: CellTask, a: AttemptResult, res: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A latency regression between two nights' stored samples may be the machine, not the model:
    before it counts, time both runs' compiled graphs again, interleaved (compare --rebench)."""
    from edgegate.compare import parse_threshold_option
    from edgegate.regression import Rebench, compare_runs

    if not any(m["status"] == "regressed" and get_metric(n).kind is MetricKind.LATENCY for n, m in res["metrics"].items()):
        return res, None
    try:
        again = compare_runs(
            ExperimentDB(task.db_url), task.previous_run_id, a.candidate_run_id,
            threshold=parse_threshold_option(task.threshold), rebench=Rebench(),
            name=f"fleet {task.fleet}: {task.cell_id} #{a.attempt} (rebench)",
        )
    except EdgeGateError as exc:
        return res, f"not possible: {exc.message}"
    info = again["rebench"]
    return again, f"re-timed interleaved on {info['target']}: {info['processes']} processes a side, {info['wall_s']} s"


def _watched_by_default(metric: str) -> bool:
    """Load and compile time are one measurement per run, with no samples to test: on a shared
    host they swing by tens of percent night to night, so they count only when watched."""
    return get_metric(metric).kind is not MetricKind.TIME


def _signal(task: CellTask, a: AttemptResult) -> str | None:
    reasons = []
    if a.passed is False and task.previous_passed is not False:
        reasons.append("gates failed: " + _failed_gates(a))
    if a.vs_previous and a.vs_previous.get("regressed"):
        reasons.append(f"regressed vs run {task.previous_run_id}: {', '.join(a.vs_previous['regressed'])}")
    return "; ".join(reasons) or None


def _attempt(task: CellTask, runner: CellRunner, n: int) -> AttemptResult:
    try:
        a = runner(task, n)
    except EdgeGateError as exc:
        return AttemptResult(n, "error", error=exc.message)
    except Exception as exc:  # a runner bug is this cell's error, not the fleet's
        log.exception("cell %s attempt %d", task.cell_id, n)
        return AttemptResult(n, "error", error=f"{type(exc).__name__}: {exc}")
    if a.status == "completed":
        a.vs_previous = _compare_previous(task, a)
        a.signal = _signal(task, a)
    return a


def execute_cell(task: CellTask, runner: CellRunner) -> CellResult:
    """Run one cell to a final status (step 4 of the module docstring); never raises."""
    t0 = time.monotonic()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    result = CellResult(task.cell_id, task.pipeline, task.device, CellStatus.ERROR, "",
                        previous_run_id=task.previous_run_id, worker=worker)
    try:
        with device_lock(task.lock_dir, task.device, timeout_s=task.lock_timeout_s,
                         holder=f"fleet {task.fleet} {task.cell_id}") as waited:
            result.lock_wait_s = waited
            _run_attempts(task, runner, result)
    except EdgeGateError as exc:
        result.status, result.reason = CellStatus.ERROR, exc.message
    except Exception as exc:
        log.exception("cell %s", task.cell_id)
        result.status, result.reason = CellStatus.ERROR, f"{type(exc).__name__}: {exc}"
    result.wall_s = time.monotonic() - t0
    return result


def _broken(a: AttemptResult) -> CellStatus:
    return CellStatus.TIMEOUT if a.status == "timeout" else CellStatus.ERROR


def _run_attempts(task: CellTask, runner: CellRunner, result: CellResult) -> None:
    first = _attempt(task, runner, 1)
    result.attempts.append(first)
    if first.status != "completed":
        result.status, result.reason = _broken(first), first.error or first.status
        return
    if first.signal is None:
        if first.passed:
            result.status, result.reason = CellStatus.PASSED, _clean_reason(first)
        else:
            result.status, result.known_failure = CellStatus.FAILED, True
            result.reason = "gates failed (as on the previous night): " + _failed_gates(first)
        return
    for n in range(2, task.confirm_reruns + 2):
        again = _attempt(task, runner, n)
        result.attempts.append(again)
        if again.status != "completed":
            result.status = _broken(again)
            result.reason = f"attempt 1: {first.signal}; confirmation attempt {n}: {again.error or again.status}"
            return
        if again.signal is None:
            result.status = CellStatus.FLAKY
            result.reason = f"attempt 1: {first.signal}; attempt {n} did not repeat it"
            return
    last = result.attempts[-1]
    confirmed = f" (confirmed by {len(result.attempts) - 1} rerun{'s' if len(result.attempts) > 2 else ''})"
    result.status = CellStatus.FAILED if last.passed is False else CellStatus.REGRESSED
    result.reason = (last.signal or "") + (confirmed if len(result.attempts) > 1 else " (not rerun: confirm_reruns 0)")


def _failed_gates(a: AttemptResult) -> str:
    return ", ".join(g["expr"] for g in a.gates if g.get("status") in FAILING_GATE) or "?"


def _clean_reason(a: AttemptResult) -> str:
    vp = a.vs_previous
    if vp is None:
        return "gates pass; no previous night to compare"
    if vp.get("error"):
        return f"gates pass; previous night not compared: {vp['error']}"
    ignored = f" (regressed, not watched: {', '.join(vp['ignored'])})" if vp.get("ignored") else ""
    return f"gates pass; vs run {vp['previous_run_id']}: {vp['verdict']}{ignored}"


# ----------------------------------------------------------------------------- the fleet


def _absolute_db_url(url: str) -> str:
    """Cells run in other processes (maybe another cwd): a relative SQLite path is made absolute."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        return prefix + str(Path(url[len(prefix):]).absolute())
    return url


def run_fleet(fleet: str | Path | FleetSpec, options: FleetOptions | None = None) -> FleetResult:
    """Run every cell of a fleet (steps in the module docstring) and return the result."""
    opts = options or FleetOptions()
    progress = opts.progress
    t0, started_at = time.monotonic(), utc_timestamp()
    # 1. the fleet file and the matrix
    spec = fleet if isinstance(fleet, FleetSpec) else load_fleet(fleet)
    cells, notes = expand_matrix(spec)
    concurrency = opts.concurrency or spec.concurrency
    home = Path(opts.home or os.environ.get("EDGEGATE_HOME", ".edgegate")).absolute()
    db_url = _absolute_db_url(opts.db_url or default_url())

    # 2. database, fleet run row, previous nights
    db = ExperimentDB(db_url)
    store = FleetStore(db)
    executor = executor_for(opts.executor, concurrency) if isinstance(opts.executor, str) else opts.executor
    fleet_run_id = store.start(spec.name, str(spec.source_path) if spec.source_path else None, executor.name)
    out_dir = Path(opts.out_dir or home / "fleet" / spec.name / str(fleet_run_id)).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    if db.engine.dialect.name == "sqlite" and not isinstance(executor, LocalExecutor):
        notes.append(f"{db_url} is a SQLite file: Dask workers on other hosts cannot reach it; use PostgreSQL")
    runner = opts.runner or SubprocessRunner()
    progress.info(f"fleet {spec.name} (run {fleet_run_id}): {len(cells)} cells on {executor.name}, "
                  f"up to {concurrency} at once; reports in {out_dir}")

    results: dict[str, CellResult] = {}
    tasks: list[tuple[Cell, CellTask]] = []
    for cell in cells:
        if cell.error is not None:
            results[cell.id] = CellResult(cell.id, cell.pipeline, cell.device, CellStatus.ERROR, cell.error)
            continue
        prev = store.previous(spec.name, cell.pipeline, cell.device, fleet_run_id)
        prev_run = db.get_run(prev.candidate_run_id) if prev and prev.candidate_run_id else None
        tasks.append((cell, CellTask(
            fleet=spec.name, cell_id=cell.id, pipeline=cell.pipeline, pipeline_path=cell.pipeline_path,
            device=cell.device, device_ref=cell.device_ref, db_url=db_url, home=str(home), out_dir=str(out_dir),
            lock_dir=str(home / "locks"), evidence=spec.evidence, evidence_dir=str(out_dir / "evidence"),
            strict=spec.strict, timeout_s=spec.timeout_s, lock_timeout_s=spec.lock_timeout_s or spec.timeout_s,
            confirm_reruns=spec.confirm_reruns, previous_run_id=prev_run.id if prev_run else None,
            previous_passed=None if prev_run is None else prev_run.status == "passed",
            threshold=spec.threshold, watch=tuple(spec.watch) if spec.watch is not None else None,
        )))
    for r in results.values():
        store.add_cell(fleet_run_id, spec.name, r.to_dict())
        progress.info(f"{r.cell}: error: {r.reason}")

    # 3-4. dispatch; 5. store each cell as it finishes
    try:
        for r in _dispatch(tasks, executor, runner, concurrency):
            results[r.cell] = r
            store.add_cell(fleet_run_id, spec.name, r.to_dict())
            progress.info(f"{r.cell}: {r.status.value} ({r.wall_s:.1f} s, {len(r.attempts)} attempt(s)): {r.reason}")
    except BaseException:  # SIGTERM / Ctrl-C: no cell process outlives the fleet
        executor.abort()
        store.finish(fleet_run_id, "aborted", None, {"cells": len(results)})
        raise
    finally:
        if isinstance(opts.executor, str):
            executor.close()
    ordered = [results[c.id] for c in cells]
    exit_code = fleet_exit_code(ordered, spec.known_failures_fail)
    result = FleetResult(
        name=spec.name, fleet_run_id=fleet_run_id, spec_path=str(spec.source_path) if spec.source_path else None,
        executor=executor.name, cells=ordered, exit_code=exit_code, started_at=started_at,
        finished_at=utc_timestamp(), wall_s=time.monotonic() - t0, history=spec.history, db_url=db_url,
        out_dir=out_dir, notes=notes,
    )
    store.finish(fleet_run_id, "done", exit_code, {"counts": result.counts(), "wall_s": result.wall_s})
    if opts.write_reports:
        result.reports = write_fleet_reports(build_fleet_report(result, db), out_dir)
    return result


def _dispatch(tasks: Sequence[tuple[Cell, CellTask]], executor: Executor, runner: CellRunner,
              concurrency: int) -> Iterator[CellResult]:
    """Yield CellResults as cells finish: at most ``concurrency`` running, one per device."""
    pending = list(tasks)
    running: dict[cf.Future[Any], tuple[Cell, CellTask]] = {}
    busy: set[str] = set()
    while pending or running:
        for item in list(pending):
            if len(running) >= concurrency:
                break
            cell, task = item
            if cell.device in busy:
                continue
            pending.remove(item)
            why_not = executor.can_run(cell.device)
            if why_not is not None:
                yield CellResult(cell.id, cell.pipeline, cell.device, CellStatus.ERROR, why_not,
                                 previous_run_id=task.previous_run_id)
                continue
            busy.add(cell.device)
            key = f"edgegate-{task.fleet}-{cell.id}-{uuid.uuid4().hex[:8]}"
            running[executor.submit(execute_cell, task, runner, device=cell.device, key=key)] = item
        if not running:
            continue
        done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
        for fut in done:
            cell, task = running.pop(fut)
            busy.discard(cell.device)
            try:
                yield fut.result()
            except Exception as exc:  # the executor lost the task (e.g. a Dask worker died)
                yield CellResult(cell.id, cell.pipeline, cell.device, CellStatus.ERROR,
                                 f"executor: {type(exc).__name__}: {exc}", previous_run_id=task.previous_run_id)
