"""The AI Hub job ledger: every job id the moment it exists, under a resume key, and which
run's jobs a run may wait on.

* Rows live in the ``aihub_jobs`` table of the run's database (in memory when no run is
  attached). A row's ``result`` keeps the ids a later step needs and the ``scope`` the row
  was keyed under.
* Resume keys: uploads by content digest (not a measurement: any run may reuse them);
  compile jobs by (model digest, device, options, resolved QAIRT), and only when the QAIRT
  version is pinned; profile and inference jobs also by the run's scope (and profile jobs by
  the benchmark call within it). So a rerun, a rebench or a confirmation rerun measures
  afresh, while a run restarted after a crash waits on the jobs it had in flight.
* A run's scope is its invocation. A run that restarts a crashed one (same pipeline, device,
  variant and digests; the crashed run ``aborted`` or ``error``, with jobs still in flight
  in the ledger and younger than ``job_timeout_s``) takes over the crashed run's scope,
  so it waits on those jobs instead of paying for them twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from edgegate.artifacts import digest_json

log = logging.getLogger(__name__)

FINAL_STATUSES = ("SUCCESS", "FAILED", "EXPIRED")
NOT_REUSABLE = ("FAILED", "EXPIRED")
MEASUREMENT_KINDS = ("compile", "profile", "inference")
CRASHED_RUN_STATUSES = ("aborted", "error")


@dataclass
class Ledger:
    """Where job ids go the moment they exist: the run's database, or memory when detached."""

    db: Any = None  # ExperimentDB
    run_id: int | None = None
    _memory: list[dict[str, Any]] = field(default_factory=list)

    def find(self, key: str, exclude: tuple[str, ...]) -> dict[str, Any] | None:
        if self.db is not None:
            return self.db.find_aihub_job(key, exclude_status=exclude)
        for row in reversed(self._memory):
            if row["resume_key"] == key and row["status"] not in exclude:
                return row
        return None

    def add(self, **row: Any) -> None:
        if self.db is not None:
            self.db.add_aihub_job(run_id=self.run_id, **row)
        else:
            self._memory.append({**row, "run_id": self.run_id, "result": row.get("result") or {}})

    def update(self, job_id: str, status: str, **kw: Any) -> None:
        if self.db is not None:
            self.db.update_aihub_job(job_id, status, **kw)
            return
        for row in self._memory:
            if row["job_id"] == job_id:
                row["status"] = status
                if kw.get("result"):
                    row["result"] = {**row.get("result", {}), **kw["result"]}
                if kw.get("failure_reason"):
                    row["failure_reason"] = kw["failure_reason"]


@dataclass(frozen=True)
class LedgerJob:
    job_id: str
    reused: bool
    status: str
    result: dict[str, Any]


def resume_key(kind: str, parts: Mapping[str, Any], client: str) -> str:
    return "sha256:" + digest_json({"kind": kind, **parts, "client": client})


@dataclass(frozen=True)
class Scope:
    """What a run's measurements are keyed by."""

    key: str  # the invocation (or the one taken over from a crashed run)
    adopted_from_run: int | None = None  # the crashed run whose in-flight jobs this run waits on


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # the ledger's naive UTC


def scope_for_run(db: Any, run_id: int, *, max_age_s: float) -> Scope:
    """The scope of a database run: its invocation, or a crashed run's it restarts."""
    run = db.get_run(run_id)
    if run is None:
        return Scope(f"run {run_id}")
    same = (run.variant, run.model_digest, run.pack_digest, run.config_digest)
    oldest = _utcnow() - dt.timedelta(seconds=max_age_s)
    for other in db.list_runs(pipeline=run.pipeline, device=run.device):
        if (other.id == run.id or other.status not in CRASHED_RUN_STATUSES or other.invocation == run.invocation
                or (other.variant, other.model_digest, other.pack_digest, other.config_digest) != same):
            continue
        in_flight = [
            row for row in db.aihub_jobs(other.id)
            if row["kind"] in MEASUREMENT_KINDS and row["status"] not in FINAL_STATUSES
            and row["created_at"] >= oldest and row["result"].get("scope")
        ]
        if in_flight:
            scope = str(in_flight[0]["result"]["scope"])
            log.info("AI Hub: run %s restarts crashed run %s: waiting on its %d job(s) in flight",
                     run.id, other.id, len(in_flight))
            return Scope(scope, other.id)
    return Scope(run.invocation)
