"""ExperimentDB: runs, metrics, latency samples, artifacts and goldens.

SQLAlchemy 2.x; SQLite under ``.edgegate/`` by default (WAL, busy timeout), any
SQLAlchemy URL (e.g. PostgreSQL) by ``--db`` / ``EDGEGATE_DB``.

A run row exists from the moment the run starts; ``finish_run`` is always called (the
orchestrator uses try/finally), and rows left "running" by a process that died are
marked "aborted" the next time the database is opened on that host.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from edgegate.errors import InputError

DEFAULT_DB_DIR = ".edgegate"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invocation: Mapped[str] = mapped_column(String(64), index=True)
    pipeline: Mapped[str] = mapped_column(String(200), index=True)
    device: Mapped[str] = mapped_column(String(200), index=True)
    variant: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)  # running|passed|failed|completed|error|aborted
    model_digest: Mapped[str | None] = mapped_column(String(80))
    pack_digest: Mapped[str | None] = mapped_column(String(80))
    config_digest: Mapped[str | None] = mapped_column(String(80))
    golden_run_id: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    report_path: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class MetricRow(Base):
    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))


class LatencySampleRow(Base):
    __tablename__ = "latency_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    graph: Mapped[str] = mapped_column(String(120))
    idx: Mapped[int] = mapped_column(Integer)
    value_ms: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(32))
    # which benchmark process took the sample (NULL: unknown, e.g. rows from before processes)
    process: Mapped[int | None] = mapped_column(Integer, nullable=True)


# Columns added after a table first shipped: create_all never alters an existing table, so
# databases made by an older EdgeGate get them here (nullable, so old rows stay valid).
_ADDED_COLUMNS = (("latency_samples", "process", "INTEGER"),)


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    graph: Mapped[str | None] = mapped_column(String(120))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)


class GoldenRow(Base):
    __tablename__ = "goldens"
    pipeline: Mapped[str] = mapped_column(String(200), primary_key=True)
    device: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    set_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ComparisonRow(Base):
    __tablename__ = "comparisons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    baseline_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    candidate_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ComparisonMetricRow(Base):
    __tablename__ = "comparison_metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    baseline: Mapped[float | None] = mapped_column(Float)
    candidate: Mapped[float | None] = mapped_column(Float)
    delta: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    significant: Mapped[int | None] = mapped_column(Integer)  # 1/0, NULL when not tested
    p_value: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)


class EvidenceRow(Base):
    """A signed evidence bundle of a run (its own table: older databases need no migration)."""

    __tablename__ = "evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class AihubJobRow(Base):
    """One Qualcomm AI Hub job (or upload) a run used, stored the moment it is submitted.

    ``resume_key`` is the digest of (model digest, device, options, client version): a rerun
    looks it up and waits on the same job instead of paying for a new one. A new table, so
    older databases need no migration.
    """

    __tablename__ = "aihub_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    graph: Mapped[str | None] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(16))  # compile | profile | inference | upload
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32))  # SUBMITTED, running states, SUCCESS, FAILED, TIMEOUT
    device: Mapped[str | None] = mapped_column(String(200))
    options_digest: Mapped[str | None] = mapped_column(String(80))
    resume_key: Mapped[str] = mapped_column(String(80), index=True)
    model_digest: Mapped[str | None] = mapped_column(String(80))
    client_version: Mapped[str | None] = mapped_column(String(32))
    reused: Mapped[int] = mapped_column(Integer, default=0)  # 1: a job an earlier run submitted
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    url: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # ids a later step needs


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


def default_url() -> str:
    env = os.environ.get("EDGEGATE_DB")
    if env:
        return env
    return f"sqlite:///{Path(DEFAULT_DB_DIR) / 'edgegate.db'}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ExperimentDB:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_url()
        try:
            if self.url.startswith("sqlite:///"):
                Path(self.url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(_with_driver(self.url), future=True)
        except (SQLAlchemyError, ValueError, ImportError, OSError) as exc:
            raise InputError(f"--db: cannot open database URL '{self.url}': {_one_line(exc)}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            create_tables(self.engine, Base.metadata)
        except SQLAlchemyError as exc:
            raise InputError(f"--db: cannot use database '{self.url}': {exc.__class__.__name__}: {_one_line(exc)}") from exc
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
        host = socket.gethostname()
        with Session(self.engine) as s, s.begin():
            for row in s.scalars(select(RunRow).where(RunRow.status == "running", RunRow.host == host)):
                if row.pid != os.getpid() and not pid_alive(row.pid):
                    row.status = "aborted"
                    row.ended_at = row.ended_at or utcnow()
                    row.error = row.error or "process exited without finishing the run"

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
            raise InputError(f"cannot record evidence of run {run_id} in '{self.url}': {_one_line(exc)}") from exc

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


def _ci(m: dict[str, Any]) -> tuple[float | None, float | None]:
    ci = m.get("ci") or m.get("ratio_ci")
    return (float(ci[0]), float(ci[1])) if ci else (None, None)


def _with_driver(url: str) -> str:
    """A bare postgresql:// URL means psycopg 3 (our dependency), not SQLAlchemy's psycopg2 default."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_tables(engine: Any, metadata: Any) -> None:
    """create_all, safe when many processes open a fresh PostgreSQL database at once (a fleet):
    without the lock two of them race to CREATE TABLE and one fails with DuplicateTable."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(74657)"))  # any constant shared by all callers
        metadata.create_all(conn)
        have = inspect(conn)
        for table, column, sql_type in _ADDED_COLUMNS:
            if column not in {c["name"] for c in have.get_columns(table)}:
                try:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
                except SQLAlchemyError as exc:  # SQLite: another process added it first
                    if "duplicate column" not in str(exc).lower():
                        raise


def _one_line(exc: BaseException) -> str:
    """SQLAlchemy appends a '(Background on this error at: ...)' line; keep the first."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


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


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
