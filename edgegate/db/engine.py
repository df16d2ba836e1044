"""Where the ExperimentDB lives and how it is opened: URL, driver, SQLite pragmas, tables.

SQLite under ``.edgegate/`` by default (WAL, busy timeout), any SQLAlchemy URL (e.g.
PostgreSQL) by ``--db`` / ``EDGEGATE_DB``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from edgegate.db.schema import Base, create_tables
from edgegate.errors import InputError

DEFAULT_DB_DIR = ".edgegate"


def default_url() -> str:
    env = os.environ.get("EDGEGATE_DB")
    if env:
        return env
    return f"sqlite:///{Path(DEFAULT_DB_DIR) / 'edgegate.db'}"


def engine_url(url: str) -> str:
    """The URL to hand create_engine: a bare postgresql:// URL means psycopg 3 (our
    dependency), not SQLAlchemy's psycopg2 default."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def first_line(exc: BaseException) -> str:
    """SQLAlchemy appends a '(Background on this error at: ...)' line; keep the first."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def open_engine(url: str) -> Engine:
    """An engine on `url` with every ExperimentDB table created; a URL that cannot be opened
    or used is an InputError naming it (the user gave it with --db / EDGEGATE_DB)."""
    try:
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(engine_url(url), future=True)
    except (SQLAlchemyError, ValueError, ImportError, OSError) as exc:
        raise InputError(f"--db: cannot open database URL '{url}': {first_line(exc)}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        create_tables(engine, Base.metadata)
    except SQLAlchemyError as exc:
        raise InputError(f"--db: cannot use database '{url}': {exc.__class__.__name__}: {first_line(exc)}") from exc
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL + a long busy timeout: many processes of a fleet write one SQLite file at once.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
