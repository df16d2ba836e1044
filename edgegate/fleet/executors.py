"""How fleet cells get executed: device locks, one attempt in a subprocess, executors.

* ``device_lock``: an exclusive ``fcntl.flock`` on ``<lock_dir>/<device>.lock``. It holds
  across processes on one host (two fleets, or a fleet and a benchmark script, never share a
  board); the kernel drops it when the holder dies. Boards shared by several hosts are kept
  apart by the Dask resource mapping instead (one host owns a board and advertises it).
* ``SubprocessRunner``: one attempt of one cell = ``python -m edgegate.fleet.cell`` in its own
  process group; a crash stays in that process and the per-run timeout ends the whole tree
  (SIGTERM, a grace period for the run row's final status, then SIGKILL).
* ``LocalExecutor`` (threads, each driving its cell's subprocesses) and ``DaskExecutor``
  (``dask.distributed``: a cell goes to a worker advertising resource ``device-<name>``).
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from edgegate.db import pid_alive
from edgegate.errors import InputError, TargetError
from edgegate.fleet.model import AttemptResult, CellTask

log = logging.getLogger(__name__)

KILL_GRACE_S = 10.0
# Cell processes started by this process: a fleet that is itself stopped ends them too.
_LIVE: set[subprocess.Popen[Any]] = set()
_LIVE_LOCK = threading.Lock()
_ABORTED = threading.Event()  # set by abort_running: start no new cell process


class DeviceBusy(TargetError):
    """The device's lock was held by another run for longer than the lock timeout."""


def resource_name(device: str) -> str:
    """The Dask worker resource that says 'this worker's host owns this board'."""
    return f"device-{device}"


@contextmanager
def device_lock(lock_dir: str | Path, device: str, *, timeout_s: float, holder: str = "") -> Iterator[float]:
    """Hold the device's lock file exclusively; yields the seconds spent waiting for it."""
    path = Path(lock_dir) / f"{device}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(path, "a+") as f:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - t0 >= timeout_s:
                    f.seek(0)
                    owner = f.read().strip() or "another process"
                    raise DeviceBusy(
                        f"device {device}: lock {path} held by {owner} for more than {timeout_s:g} s"
                    ) from None
                time.sleep(0.1)
        waited = time.monotonic() - t0
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()}{' (' + holder + ')' if holder else ''}\n")
            f.flush()
            yield waited
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- one attempt


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(proc: subprocess.Popen[Any], grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group and every descendant (some start their own session), wait,
    then SIGKILL whatever is left."""
    pids = [proc.pid, *_descendants(proc.pid)]
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        for pid in pids[1:]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if not any(_alive(p) for p in pids[1:]):
            return


def _alive(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class SubprocessRunner:
    """Run one attempt as ``<command> --pipeline ... --result FILE`` in its own process group.

    ``command`` defaults to ``python -m edgegate.fleet.cell``; tests give a stand-in with the
    same arguments. The cell's output goes to ``<out_dir>/logs/<cell>-attempt<N>.log``.
    """

    command: Sequence[str] = field(default_factory=lambda: (sys.executable, "-m", "edgegate.fleet.cell"))
    env: dict[str, str] | None = None

    def __call__(self, task: CellTask, attempt: int) -> AttemptResult:
        out = Path(task.out_dir)
        stem = f"{task.cell_id}-attempt{attempt}"
        result_path = out / "cells" / f"{stem}.result.json"
        log_path = out / "logs" / f"{stem}.log"
        for d in (result_path.parent, log_path.parent):
            d.mkdir(parents=True, exist_ok=True)
        result_path.unlink(missing_ok=True)
        argv = [
            *self.command, "--pipeline", task.pipeline_path, "--device", task.device_ref, "--db", task.db_url,
            "--home", task.home, "--result", str(result_path), "--report", str(out / "cells" / f"{stem}.json"),
            "--evidence", task.evidence, "--evidence-dir", task.evidence_dir,
        ]
        if task.strict:
            argv.append("--strict")
        t0 = time.monotonic()
        if _ABORTED.is_set():
            return AttemptResult(attempt, "error", error="the fleet was stopped before this attempt started")
        with open(log_path, "wb") as logf:
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**os.environ, **(self.env or {})})
            with _LIVE_LOCK:
                _LIVE.add(proc)
            try:
                rc = proc.wait(timeout=task.timeout_s)
            except subprocess.TimeoutExpired:
                kill_tree(proc)
                return AttemptResult(attempt, "timeout", error=f"killed after the {task.timeout_s:g} s timeout",
                                     wall_s=time.monotonic() - t0, log_path=str(log_path))
            except BaseException:
                kill_tree(proc, grace_s=2.0)
                raise
            finally:
                with _LIVE_LOCK:
                    _LIVE.discard(proc)
        wall = time.monotonic() - t0
        if not result_path.is_file():
            tail = _tail(log_path)
            return AttemptResult(attempt, "error", error=f"cell process exited {rc} without a result: {tail}",
                                 wall_s=wall, log_path=str(log_path))
        data = json.loads(result_path.read_text())
        return AttemptResult.from_dict({**data, "attempt": attempt, "wall_s": wall, "log_path": str(log_path)})


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) if text else "(empty log)"


# ----------------------------------------------------------------------------- executors


def abort_running(grace_s: float = 5.0) -> int:
    """End every cell process this process started (the fleet itself was stopped)."""
    _ABORTED.set()
    with _LIVE_LOCK:
        procs = list(_LIVE)
    threads = [threading.Thread(target=kill_tree, args=(p, grace_s)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(procs)


class LocalExecutor:
    """Cells on this host: one thread per running cell (each waits on its subprocess)."""

    name = "local"

    def __init__(self, concurrency: int) -> None:
        _ABORTED.clear()
        self._pool = cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="edgegate-cell")

    def can_run(self, device: str) -> str | None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any, device: str, key: str) -> cf.Future[Any]:
        return self._pool.submit(fn, *args)

    def abort(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        abort_running()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class DaskExecutor:
    """Cells on a Dask cluster: each goes to a worker advertising ``device-<name>=1``, so the
    lab host that owns a board runs its cells (and the scheduler never gives one board two)."""

    def __init__(self, address: str | Any) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise InputError(
                "--executor dask://...: dask.distributed is not installed; pip install 'edgegate[fleet]'"
            ) from None
        try:
            self.client = address if isinstance(address, Client) else Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--executor: cannot reach the Dask scheduler at {address}: {exc}") from None
        self.name = f"dask {self.client.scheduler.address}"
        self._owns_client = not isinstance(address, Client)
        self._submitted: list[Any] = []

    def worker_resources(self) -> dict[str, dict[str, float]]:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return {addr: dict(w.get("resources") or {}) for addr, w in workers.items()}

    def can_run(self, device: str) -> str | None:
        want = resource_name(device)
        workers = self.worker_resources()
        if any(want in res for res in workers.values()):
            return None
        offered = sorted({r for res in workers.values() for r in res})
        return (f"no Dask worker advertises resource {want} (start the board's host worker with "
                f"--resources '{want}=1'; offered: {', '.join(offered) or 'none'})")

    def submit(self, fn: Callable[..., Any], *args: Any, device: str, key: str) -> cf.Future[Any]:
        done: cf.Future[Any] = cf.Future()
        fut = self.client.submit(fn, *args, resources={resource_name(device): 1}, pure=False, key=key, retries=0)

        def transfer(f: Any) -> None:
            try:
                if f.status == "finished":
                    done.set_result(f.result())
                else:
                    done.set_exception(f.exception() or RuntimeError(f"Dask task {f.key} {f.status}"))
            except BaseException as exc:  # a cancelled future raises on exception() too
                done.set_exception(exc)

        fut.add_done_callback(transfer)
        done.dask_future = fut  # type: ignore[attr-defined]  # keeps the task alive until collected
        self._submitted.append(fut)
        return done

    def abort(self) -> None:
        # A task already running on a worker finishes (its cell's own timeout still holds);
        # queued ones are dropped.
        self.client.cancel([f for f in self._submitted if not f.done()])

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def executor_for(spec: str, concurrency: int) -> LocalExecutor | DaskExecutor:
    """``local`` or ``dask://HOST:PORT`` (``tcp://`` and ``tls://`` addresses are passed through)."""
    if spec == "local":
        return LocalExecutor(concurrency)
    if spec.startswith("dask://"):
        return DaskExecutor("tcp://" + spec[len("dask://"):])
    if spec.startswith(("tcp://", "tls://")):
        return DaskExecutor(spec)
    raise InputError(f"--executor: expected 'local' or 'dask://HOST:PORT', got '{spec}'")
