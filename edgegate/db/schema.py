"""The ExperimentDB tables: one ORM row class per SQL table, and how tables are created.

These declarations are the stored format: a database made by an older EdgeGate must open
and read the same, so a table or column is only ever added (new tables need no migration;
a column added to an existing table is listed in ``ADDED_COLUMNS``), never renamed.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    inspect,
    text,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    """Naive UTC: the DateTime columns hold UTC without a zone on every backend."""
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
ADDED_COLUMNS = (("latency_samples", "process", "INTEGER"),)


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


def create_tables(engine: Any, metadata: Any) -> None:
    """create_all, safe when many processes open a fresh database at once (a fleet starts
    its cells together). PostgreSQL: an advisory lock serialises them. SQLite runs DDL
    outside a transaction, so two processes can both see a table missing and one then fails
    with "table ... already exists": that means another process made progress, so look
    again (create_all skips what exists now); each retry has one table fewer to race for."""
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            _create_tables_once(engine, metadata)
            return
        except OperationalError as exc:
            if "already exists" not in str(exc).lower() or attempt == _CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


# more than the tables and indexes there are: every failed attempt saw one of them appear
_CREATE_ATTEMPTS = 40


def _create_tables_once(engine: Any, metadata: Any) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(74657)"))  # any constant shared by all callers
        metadata.create_all(conn)
        have = inspect(conn)
        for table, column, sql_type in ADDED_COLUMNS:
            if column not in {c["name"] for c in have.get_columns(table)}:
                try:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
                except SQLAlchemyError as exc:  # SQLite: another process added it first
                    if "duplicate column" not in str(exc).lower():
                        raise
