"""The values a fleet passes around: cells, what a worker gets, what it returns, the fleet's result.

They live here, below the orchestrator (``fleet.run``), the executors and the reports, so
each of those imports the values and none imports another to reach them. Tasks and results
cross process boundaries (Dask pickles them), so they are plain dataclasses.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

from edgegate.progress import Progress


class CellStatus(str, Enum):
    PASSED = "passed"
    FAILED = "failed"  # gates failed against golden (confirmed when new)
    REGRESSED = "regressed"  # worse than the previous night, confirmed by a rerun
    FLAKY = "flaky"  # looked regressed, the rerun did not
    ERROR = "error"
    TIMEOUT = "timeout"


BAD = (CellStatus.FAILED, CellStatus.REGRESSED)
BROKEN = (CellStatus.ERROR, CellStatus.TIMEOUT)
# Cell statuses whose candidate run is a measurement a later night can compare against.
MEASURED = (CellStatus.PASSED, CellStatus.FAILED, CellStatus.REGRESSED, CellStatus.FLAKY)
FAILING_GATE = ("fail", "missing")  # as gates.verdict: n/a does not fail


@dataclass(frozen=True)
class Cell:
    """One pipeline on one device. ``error`` set: the cell cannot run (a file did not load)."""

    pipeline: str
    pipeline_path: str
    device: str
    device_ref: str  # what the run loads: the device file's absolute path
    error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.pipeline}@{self.device}"


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs to run one cell (picklable, paths absolute)."""

    fleet: str
    cell_id: str
    pipeline: str
    pipeline_path: str
    device: str
    device_ref: str
    db_url: str
    home: str
    out_dir: str
    lock_dir: str
    evidence: str
    evidence_dir: str
    strict: bool
    timeout_s: float
    lock_timeout_s: float
    confirm_reruns: int
    previous_run_id: int | None = None
    previous_passed: bool | None = None  # did the previous night pass its gates
    threshold: str | None = None
    watch: tuple[str, ...] | None = None


@dataclass
class AttemptResult:
    attempt: int
    status: Literal["completed", "error", "timeout"]
    passed: bool | None = None
    baseline_run_id: int | None = None
    candidate_run_id: int | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    report_path: str | None = None
    evidence_path: str | None = None
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    log_path: str | None = None
    vs_previous: dict[str, Any] | None = None
    signal: str | None = None  # why this attempt looks like a regression

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttemptResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# One attempt of one cell: ``runner(task, attempt_number)``; SubprocessRunner in production.
CellRunner = Callable[[CellTask, int], AttemptResult]


@dataclass
class CellResult:
    cell: str
    pipeline: str
    device: str
    status: CellStatus
    reason: str
    attempts: list[AttemptResult] = field(default_factory=list)
    previous_run_id: int | None = None
    wall_s: float = 0.0
    lock_wait_s: float = 0.0
    worker: str = ""
    known_failure: bool = False  # failed its gates the same way on the previous night

    @property
    def final(self) -> AttemptResult | None:
        return self.attempts[-1] if self.attempts else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


class Executor(Protocol):
    """Where cells run (``fleet.executors``: LocalExecutor, DaskExecutor)."""

    name: str

    def can_run(self, device: str) -> str | None:
        """None when some worker can run a cell on ``device``, else why not."""

    def submit(self, fn: Callable[..., Any], *args: Any, device: str, key: str) -> cf.Future[Any]:
        """Run ``fn(*args)`` where ``device`` is reachable; ``key`` names the task."""

    def abort(self) -> None:
        """The fleet was stopped: drop queued cells and end running cell processes."""

    def close(self) -> None:
        """Release the executor after every cell finished."""


@dataclass
class FleetOptions:
    executor: str | Executor = "local"  # "local", "dask://HOST:PORT", or an executor object
    concurrency: int | None = None  # default: the fleet file's
    out_dir: Path | None = None  # default: <home>/fleet/<name>/<fleet run id>
    db_url: str | None = None
    home: Path | None = None
    runner: CellRunner | None = None  # default: SubprocessRunner (python -m edgegate.fleet.cell)
    progress: Progress = field(default_factory=lambda: Progress(quiet=True))
    write_reports: bool = True


@dataclass
class FleetResult:
    name: str
    fleet_run_id: int
    spec_path: str | None
    executor: str
    cells: list[CellResult]
    exit_code: int
    started_at: str
    finished_at: str
    wall_s: float
    history: int
    db_url: str
    out_dir: Path
    notes: list[str] = field(default_factory=list)
    reports: dict[str, Path] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in CellStatus}
        for c in self.cells:
            out[c.status.value] += 1
        return out


def fleet_exit_code(cells: Sequence[CellResult], known_failures_fail: bool = False) -> int:
    """1: a confirmed regression or newly failing gates (known failures too when asked);
    3: no such cell but some cell errored or timed out; 0 otherwise."""
    if any(c.status in BAD and (known_failures_fail or not c.known_failure) for c in cells):
        return 1
    if any(c.status in BROKEN for c in cells):
        return 3
    return 0
