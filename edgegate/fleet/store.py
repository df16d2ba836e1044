"""Fleet history in the ExperimentDB: one row per fleet run, one per cell.

The runs themselves (metrics, latency samples, goldens) stay in ExperimentDB's tables; a
cell row points at its candidate run. Two questions are answered from here: which run is
"the previous night" of a cell (the last earlier fleet run of the same fleet that measured
it), and a cell's trend over the last N fleet runs. The tables live in their own metadata,
created on first use, so databases made before fleets existed need no migration.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from edgegate.db import ExperimentDB, create_tables, utcnow
from edgegate.fleet.model import MEASURED


class FleetBase(DeclarativeBase):
    pass


class FleetRunRow(FleetBase):
    __tablename__ = "fleet_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fleet: Mapped[str] = mapped_column(String(200), index=True)
    spec_path: Mapped[str | None] = mapped_column(Text)
    executor: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # running | done | aborted
    exit_code: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class FleetCellRow(FleetBase):
    __tablename__ = "fleet_cells"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fleet_run_id: Mapped[int] = mapped_column(Integer, index=True)
    fleet: Mapped[str] = mapped_column(String(200), index=True)
    pipeline: Mapped[str] = mapped_column(String(200), index=True)
    device: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    candidate_run_id: Mapped[int | None] = mapped_column(Integer)
    baseline_run_id: Mapped[int | None] = mapped_column(Integer)
    previous_run_id: Mapped[int | None] = mapped_column(Integer)
    wall_s: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


@dataclass(frozen=True)
class CellHistory:
    fleet_run_id: int
    started_at: dt.datetime
    status: str
    candidate_run_id: int | None
    baseline_run_id: int | None


class FleetStore:
    """Fleet rows next to the runs of an ExperimentDB (same engine)."""

    def __init__(self, db: ExperimentDB) -> None:
        self.db = db
        self.engine = db.engine
        create_tables(self.engine, FleetBase.metadata)

    def start(self, fleet: str, spec_path: str | None, executor: str) -> int:
        with Session(self.engine) as s, s.begin():
            row = FleetRunRow(fleet=fleet, spec_path=spec_path, executor=executor, host=socket.gethostname(),
                              pid=os.getpid(), status="running", started_at=utcnow())
            s.add(row)
            s.flush()
            return row.id

    def finish(self, fleet_run_id: int, status: str, exit_code: int | None, summary: dict[str, Any]) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(FleetRunRow, fleet_run_id)
            if row is not None:
                row.status, row.exit_code, row.summary, row.ended_at = status, exit_code, summary, utcnow()

    def add_cell(self, fleet_run_id: int, fleet: str, cell: dict[str, Any]) -> None:
        """Store one finished cell (``CellResult.to_dict()``)."""
        final = cell["attempts"][-1] if cell["attempts"] else {}
        with Session(self.engine) as s, s.begin():
            s.add(FleetCellRow(
                fleet_run_id=fleet_run_id, fleet=fleet, pipeline=cell["pipeline"], device=cell["device"],
                status=cell["status"], attempts=len(cell["attempts"]),
                candidate_run_id=final.get("candidate_run_id"), baseline_run_id=final.get("baseline_run_id"),
                previous_run_id=cell.get("previous_run_id"), wall_s=cell.get("wall_s"), reason=cell.get("reason"),
                details={"attempts": cell["attempts"], "worker": cell.get("worker")}, created_at=utcnow(),
            ))

    def previous(self, fleet: str, pipeline: str, device: str, before_fleet_run_id: int) -> CellHistory | None:
        """The last earlier fleet run's measurement of this cell (the previous night)."""
        q = (
            select(FleetCellRow, FleetRunRow.started_at)
            .join(FleetRunRow, FleetRunRow.id == FleetCellRow.fleet_run_id)
            .where(FleetCellRow.fleet == fleet, FleetCellRow.pipeline == pipeline, FleetCellRow.device == device,
                   FleetCellRow.fleet_run_id < before_fleet_run_id,
                   FleetCellRow.status.in_([s.value for s in MEASURED]), FleetCellRow.candidate_run_id.is_not(None))
            .order_by(FleetCellRow.fleet_run_id.desc())
            .limit(1)
        )
        with Session(self.engine) as s:
            found = s.execute(q).first()
            return None if found is None else _history(found[0], found[1])

    def history(self, fleet: str, pipeline: str, device: str, nights: int) -> list[CellHistory]:
        """This cell in the last ``nights`` fleet runs that ran it, oldest first."""
        q = (
            select(FleetCellRow, FleetRunRow.started_at)
            .join(FleetRunRow, FleetRunRow.id == FleetCellRow.fleet_run_id)
            .where(FleetCellRow.fleet == fleet, FleetCellRow.pipeline == pipeline, FleetCellRow.device == device)
            .order_by(FleetCellRow.fleet_run_id.desc())
            .limit(nights)
        )
        with Session(self.engine) as s:
            return [_history(r, started) for r, started in reversed(s.execute(q).all())]

    def fleet_runs(self, fleet: str, limit: int = 20) -> list[dict[str, Any]]:
        q = select(FleetRunRow).where(FleetRunRow.fleet == fleet).order_by(FleetRunRow.id.desc()).limit(limit)
        with Session(self.engine) as s:
            return [
                {"id": r.id, "status": r.status, "exit_code": r.exit_code, "started_at": r.started_at,
                 "ended_at": r.ended_at, "executor": r.executor, "summary": r.summary}
                for r in s.scalars(q)
            ]

    def cells(self, fleet_run_id: int) -> list[dict[str, Any]]:
        q = select(FleetCellRow).where(FleetCellRow.fleet_run_id == fleet_run_id).order_by(FleetCellRow.id)
        with Session(self.engine) as s:
            return [
                {"pipeline": r.pipeline, "device": r.device, "status": r.status, "attempts": r.attempts,
                 "candidate_run_id": r.candidate_run_id, "previous_run_id": r.previous_run_id, "reason": r.reason}
                for r in s.scalars(q)
            ]


def _history(row: FleetCellRow, started_at: dt.datetime) -> CellHistory:
    return CellHistory(row.fleet_run_id, started_at, row.status, row.candidate_run_id, row.baseline_run_id)
