"""ExperimentDB: runs, metrics, latency samples, artifacts, evidence, AI Hub jobs, goldens
and comparisons, read and written through one small API (callers never see a Session).

A run row exists from the moment the run starts; ``finish_run`` is always called (the
orchestrator uses try/finally), and rows left "running" by a process that died are
marked "aborted" the next time the database is opened on that host.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from edgegate.db.engine import default_url, first_line, open_engine, pid_alive
from edgegate.db.schema import (
    AihubJobRow,
    ArtifactRow,
    ComparisonMetricRow,
    ComparisonRow,
    EvidenceRow,
    GoldenRow,
    LatencySampleRow,
    MetricRow,
    RunRow,
    utcnow,
)
from edgegate.errors import InputError

log = logging.getLogger(__name__)

# Integer primary keys are signed 64-bit on SQLite and PostgreSQL.
_MAX_ID = 2**63 - 1


def in_id_range(value: int) -> bool:
    """Whether `value` can be a row id at all (larger ones overflow the driver)."""
    return 0 <= value <= _MAX_ID


@dataclass(frozen=True)
class Run:
    id: int
    invocation: str
    pipeline: str
    device: str
    variant: str
    status: str
    model_digest: str | None
    pack_digest: str | None
    config_digest: str | None
    golden_run_id: int | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    error: str | None
    report_path: str | None
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class StoredMetric:
    name: str
    value: float
    unit: str | None
    source: str


class ExperimentDB:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_url()
        self.engine = open_engine(self.url)
        self._recover_stale()

    # -- runs ------------------------------------------------------------------

    def start_run(
        self,
        *,
        invocation: str,
        pipeline: str,
        device: str,
        variant: str,
        model_digest: str | None,
        pack_digest: str | None,
        config_digest: str | None,
        golden_run_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        with Session(self.engine) as s, s.begin():
            row = RunRow(
                invocation=invocation,
                pipeline=pipeline,
                device=device,
                variant=variant,
                status="running",
                model_digest=model_digest,
                pack_digest=pack_digest,
                config_digest=config_digest,
                golden_run_id=golden_run_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at=utcnow(),
                details=details,
            )
            s.add(row)
            s.flush()
            return row.id

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        error: str | None = None,
        report_path: str | None = None,
        model_digest: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(RunRow, run_id)
            if row is None:
                return
            row.status = status
            row.ended_at = utcnow()
            row.error = error
            if report_path is not None:
                row.report_path = report_path
            if model_digest is not None:
                row.model_digest = model_digest
            if details is not None:
                row.details = {**(row.details or {}), **details}

    def set_report_path(self, run_id: int, path: str) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(RunRow, run_id)
            if row is not None:
                row.report_path = path

    def get_run(self, run_id: int) -> Run | None:
        if not in_id_range(run_id):  # a 30-digit id is no run, not an OverflowError
            return None
        with Session(self.engine) as s:
            row = s.get(RunRow, run_id)
            return _run(row) if row else None

    def list_runs(self, pipeline: str | None = None, device: str | None = None, limit: int = 50) -> list[Run]:
        q = select(RunRow).order_by(RunRow.id.desc()).limit(limit)
        if pipeline:
            q = q.where(RunRow.pipeline == pipeline)
        if device:
            q = q.where(RunRow.device == device)
        with Session(self.engine) as s:
            return [_run(r) for r in s.scalars(q)]

    def _recover_stale(self) -> None:
        """Mark "aborted" the rows of this host's dead processes. A database that cannot be
        written now (full disk, read-only file) is still read: the rows wait for a later open."""
        host = socket.gethostname()
        try:
            with Session(self.engine) as s, s.begin():
                for row in s.scalars(select(RunRow).where(RunRow.status == "running", RunRow.host == host)):
                    if row.pid != os.getpid() and not pid_alive(row.pid):
                        row.status = "aborted"
                        row.ended_at = row.ended_at or utcnow()
                        row.error = row.error or "process exited without finishing the run"
        except OperationalError as exc:
            log.warning("%s: stale runs not marked aborted: %s", self.url, first_line(exc))

    # -- measurements ----------------------------------------------------------

    def add_metrics(self, run_id: int, metrics: Iterable[StoredMetric]) -> None:
        with Session(self.engine) as s, s.begin():
            s.add_all(
                MetricRow(run_id=run_id, name=m.name, value=float(m.value), unit=m.unit, source=m.source)
                for m in metrics
            )

    def metrics(self, run_id: int) -> dict[str, StoredMetric]:
        with Session(self.engine) as s:
            rows = s.scalars(select(MetricRow).where(MetricRow.run_id == run_id).order_by(MetricRow.id))
            return {r.name: StoredMetric(r.name, r.value, r.unit, r.source) for r in rows}

    def add_latency_samples(
        self, run_id: int, graph: str, samples_ms: Sequence[float], source: str,
        processes: Sequence[int] | None = None,
    ) -> None:
        """Store one graph's samples; `processes` (aligned) says which benchmark process took each."""
        if processes is not None and len(processes) != len(samples_ms):
            raise ValueError(f"add_latency_samples: {len(processes)} process ids for {len(samples_ms)} samples")
        procs = list(processes) if processes else [None] * len(samples_ms)
        with Session(self.engine) as s, s.begin():
            s.add_all(
                LatencySampleRow(run_id=run_id, graph=graph, idx=i, value_ms=float(v), source=source,
                                 process=None if p is None else int(p))
                for i, (v, p) in enumerate(zip(samples_ms, procs))
            )

    def latency_with_processes(self, run_id: int) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
        """(graph -> samples in timed order, graph -> the benchmark process of each sample), in
        one query; the second has only graphs whose every sample has a process id (runs stored
        before process ids existed give {})."""
        samples: dict[str, list[float]] = {}
        procs: dict[str, list[int | None]] = {}
        with Session(self.engine) as s:
            q = select(LatencySampleRow.graph, LatencySampleRow.value_ms, LatencySampleRow.process).where(
                LatencySampleRow.run_id == run_id
            ).order_by(LatencySampleRow.graph, LatencySampleRow.idx)
            for graph, value, proc in s.execute(q):
                samples.setdefault(graph, []).append(value)
                procs.setdefault(graph, []).append(proc)
        known = {g: [int(p) for p in ps] for g, ps in procs.items() if all(p is not None for p in ps)}
        return samples, known

    def latency_samples(self, run_id: int) -> dict[str, list[float]]:
        return self.latency_with_processes(run_id)[0]

    def latency_processes(self, run_id: int) -> dict[str, list[int]]:
        return self.latency_with_processes(run_id)[1]

    def add_artifact(self, run_id: int, kind: str, graph: str | None, path: Path, sha256: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.add(
                ArtifactRow(
                    run_id=run_id, kind=kind, graph=graph, path=str(path), sha256=sha256,
                    size_bytes=path.stat().st_size if path.exists() else 0,
                )
            )

    def artifacts(self, run_id: int) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            rows = s.scalars(select(ArtifactRow).where(ArtifactRow.run_id == run_id).order_by(ArtifactRow.id))
            return [
                {"kind": r.kind, "graph": r.graph, "path": r.path, "sha256": r.sha256, "size_bytes": r.size_bytes}
                for r in rows
            ]

    # -- evidence --------------------------------------------------------------

    def add_evidence(self, run_id: int, path: Path, sha256: str, key_id: str) -> None:
        try:
            with Session(self.engine) as s, s.begin():
                s.add(EvidenceRow(run_id=run_id, path=str(path), sha256=sha256, key_id=key_id, created_at=utcnow()))
        except SQLAlchemyError as exc:
            raise InputError(f"cannot record evidence of run {run_id} in '{self.url}': {first_line(exc)}") from exc

    def evidence_for(self, run_id: int) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            rows = s.scalars(select(EvidenceRow).where(EvidenceRow.run_id == run_id).order_by(EvidenceRow.id))
            return [
                {"path": r.path, "sha256": r.sha256, "key_id": r.key_id, "created_at": r.created_at}
                for r in rows
            ]

    # -- AI Hub job ledger ----------------------------------------------------

    def add_aihub_job(
        self, *, run_id: int | None, graph: str | None, kind: str, job_id: str, status: str,
        device: str | None, options_digest: str | None, resume_key: str, model_digest: str | None,
        client_version: str | None, url: str | None = None, reused: bool = False,
        result: dict[str, Any] | None = None,
    ) -> int:
        with Session(self.engine) as s, s.begin():
            row = AihubJobRow(
                run_id=run_id, graph=graph, kind=kind, job_id=job_id, status=status, device=device,
                options_digest=options_digest, resume_key=resume_key, model_digest=model_digest,
                client_version=client_version, url=url, reused=int(reused), created_at=utcnow(),
                result=result,
            )
            s.add(row)
            s.flush()
            return row.id

    def update_aihub_job(
        self, job_id: str, status: str, *, failure_reason: str | None = None,
        result: dict[str, Any] | None = None, finished: bool = False,
    ) -> None:
        """Set the status of every ledger row of ``job_id`` (a reused job has one per run)."""
        with Session(self.engine) as s, s.begin():
            for row in s.scalars(select(AihubJobRow).where(AihubJobRow.job_id == job_id)):
                row.status = status
                if failure_reason is not None:
                    row.failure_reason = failure_reason
                if result is not None:
                    row.result = {**(row.result or {}), **result}
                if finished and row.finished_at is None:
                    row.finished_at = utcnow()

    def find_aihub_job(self, resume_key: str, *, exclude_status: Sequence[str] = ()) -> dict[str, Any] | None:
        """The newest ledger row with this resume key whose status is not excluded."""
        q = select(AihubJobRow).where(AihubJobRow.resume_key == resume_key).order_by(AihubJobRow.id.desc())
        if exclude_status:
            q = q.where(AihubJobRow.status.not_in(list(exclude_status)))
        with Session(self.engine) as s:
            row = s.scalars(q.limit(1)).first()
            return _aihub_job(row) if row is not None else None

    def aihub_jobs(self, run_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        q = select(AihubJobRow).order_by(AihubJobRow.id.desc()).limit(limit)
        if run_id is not None:
            q = q.where(AihubJobRow.run_id == run_id)
        with Session(self.engine) as s:
            return [_aihub_job(r) for r in s.scalars(q)]

    # -- goldens ---------------------------------------------------------------

    def golden(self, pipeline: str, device: str) -> int | None:
        with Session(self.engine) as s:
            row = s.get(GoldenRow, (pipeline, device))
            return row.run_id if row else None

    def claim_golden(self, pipeline: str, device: str, run_id: int) -> int:
        """Make `run_id` the golden unless one exists; returns the golden now stored. Two first
        runs racing both measure a baseline, and exactly one becomes the golden: the other
        compares against it (an INSERT that the primary key lets only one process win)."""
        for _ in range(3):
            try:
                with Session(self.engine) as s, s.begin():
                    if s.get(GoldenRow, (pipeline, device)) is None:
                        s.add(GoldenRow(pipeline=pipeline, device=device, run_id=run_id, set_at=utcnow()))
            except IntegrityError:  # another process inserted it between our read and our insert
                if self.golden(pipeline, device) is None:
                    raise  # not that race: a bad run id
            winner = self.golden(pipeline, device)
            if winner is not None:
                return winner
        raise InputError(f"golden of {pipeline} on {device} keeps being cleared while run {run_id} claims it")

    def set_golden(self, pipeline: str, device: str, run_id: int) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(GoldenRow, (pipeline, device))
            if row is None:
                s.add(GoldenRow(pipeline=pipeline, device=device, run_id=run_id, set_at=utcnow()))
            else:
                row.run_id = run_id
                row.set_at = utcnow()

    def clear_golden(self, pipeline: str, device: str | None = None) -> int:
        with Session(self.engine) as s, s.begin():
            q = select(GoldenRow).where(GoldenRow.pipeline == pipeline)
            if device:
                q = q.where(GoldenRow.device == device)
            rows = list(s.scalars(q))
            for r in rows:
                s.delete(r)
            return len(rows)

    def goldens(self, pipeline: str | None = None) -> list[tuple[str, str, int, dt.datetime]]:
        with Session(self.engine) as s:
            q = select(GoldenRow).order_by(GoldenRow.pipeline, GoldenRow.device)
            if pipeline:
                q = q.where(GoldenRow.pipeline == pipeline)
            return [(r.pipeline, r.device, r.run_id, r.set_at) for r in s.scalars(q)]

    # -- comparisons -----------------------------------------------------------

    def add_comparison(
        self,
        baseline_run_id: int,
        candidate_run_id: int,
        result: dict[str, Any],
        *,
        name: str | None = None,
        notes: str | None = None,
        verdict: str = "neutral",
    ) -> int:
        with Session(self.engine) as s, s.begin():
            row = ComparisonRow(
                baseline_run_id=baseline_run_id, candidate_run_id=candidate_run_id, name=name,
                notes=notes, verdict=verdict, created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            for metric, m in result["metrics"].items():
                lo, hi = _ci(m)
                sig = m.get("significant")
                s.add(
                    ComparisonMetricRow(
                        comparison_id=row.id, name=metric, baseline=m.get("baseline"), candidate=m.get("candidate"),
                        delta=m.get("delta"), status=m["status"], significant=None if sig is None else int(bool(sig)),
                        p_value=m.get("p_value"), ci_low=lo, ci_high=hi,
                    )
                )
            return row.id

    def comparison(self, comparison_id: int) -> dict[str, Any] | None:
        with Session(self.engine) as s:
            row = s.get(ComparisonRow, comparison_id)
            if row is None:
                return None
            metrics = s.scalars(
                select(ComparisonMetricRow).where(ComparisonMetricRow.comparison_id == comparison_id)
                .order_by(ComparisonMetricRow.id)
            )
            return {
                "id": row.id, "baseline_run_id": row.baseline_run_id, "candidate_run_id": row.candidate_run_id,
                "name": row.name, "notes": row.notes, "verdict": row.verdict, "created_at": row.created_at,
                "metrics": {
                    m.name: {"baseline": m.baseline, "candidate": m.candidate, "delta": m.delta, "status": m.status,
                             "significant": None if m.significant is None else bool(m.significant),
                             "p_value": m.p_value, "ci": None if m.ci_low is None else [m.ci_low, m.ci_high]}
                    for m in metrics
                },
            }


# Rows to the plain values the API hands out (callers never hold an ORM row outside a session).


def _ci(m: dict[str, Any]) -> tuple[float | None, float | None]:
    ci = m.get("ci") or m.get("ratio_ci")
    return (float(ci[0]), float(ci[1])) if ci else (None, None)


def _aihub_job(row: AihubJobRow) -> dict[str, Any]:
    return {
        "id": row.id, "run_id": row.run_id, "graph": row.graph, "kind": row.kind, "job_id": row.job_id,
        "status": row.status, "device": row.device, "options_digest": row.options_digest,
        "resume_key": row.resume_key, "model_digest": row.model_digest, "client_version": row.client_version,
        "reused": bool(row.reused), "created_at": row.created_at, "finished_at": row.finished_at,
        "url": row.url, "failure_reason": row.failure_reason, "result": dict(row.result or {}),
    }


def _run(row: RunRow) -> Run:
    return Run(
        row.id, row.invocation, row.pipeline, row.device, row.variant, row.status, row.model_digest,
        row.pack_digest, row.config_digest, row.golden_run_id, row.started_at, row.ended_at, row.error,
        row.report_path, dict(row.details or {}),
    )
