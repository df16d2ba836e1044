"""Where the ExperimentDB lives and how it is opened: URL, driver, SQLite pragmas, tables.

SQLite under ``.edgegate/`` by default (WAL, busy timeout), any SQLAlchemy URL (e.g.
PostgreSQL) by ``--db`` / ``EDGEGATE_DB``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from edgegate.db.schema import Base, create_tables
from edgegate.errors import EdgeGateError, EnvironmentFailure, InputError, os_error

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
    except OSError as exc:  # the URL is fine, its directory cannot be made (read-only, full)
        raise os_error(exc, f"--db {url}") from exc
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise InputError(f"--db: cannot open database URL '{url}': {first_line(exc)}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _opened.append(url)
    try:
        with _setup_lock(url):
            create_tables(engine, Base.metadata)
    except SQLAlchemyError as exc:
        if failure_cause(exc) is not None:  # the database is there but damaged or unwritable
            raise database_error(exc, url) from exc
        raise InputError(f"--db: cannot use database '{url}': {exc.__class__.__name__}: {first_line(exc)}") from exc
    return engine


@contextmanager
def _setup_lock(url: str) -> Iterator[None]:
    """Processes opening one SQLite file take turns at its set-up (switching to WAL, creating
    tables): SQLite answers a second process's journal-mode switch with "database is locked"
    at once, whatever the busy timeout, so four cells starting on a fresh file failed now and
    then. An exclusive lock on a file beside the database orders them; other databases (and
    SQLite in memory) need none."""
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        yield
        return
    try:
        fh = open(f"{path}.setup-lock", "a")
    except OSError:  # a directory we cannot write: nothing can be set up there, only read
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL + a long busy timeout: many processes of a fleet write one SQLite file at once.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL waits on other openers
    cur.execute("PRAGMA journal_mode=WAL")
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


# SQLite's words for a damaged or unwritable database, and ours for the user. ("file is not
# a database" is not here: --db naming some other file is bad input, exit 2.)
_DB_CAUSES = (
    ("malformed", "the database file is damaged (database disk image is malformed); restore it from a "
                  "backup or point --db / EDGEGATE_DB at a new file"),
    ("disk is full", "disk full"),
    ("disk i/o error", "disk I/O error"),
    ("readonly database", "read-only database (the file or its directory cannot be written)"),
    ("unable to open database", "cannot open the database file"),
)


def failure_cause(exc: SQLAlchemyError) -> str | None:
    """What is wrong with the database file or its disk, in the user's words; None when
    `exc` is not such a failure (a bad URL, a bug)."""
    text = first_line(exc).lower()
    return next((words for key, words in _DB_CAUSES if key in text), None)


def database_error(exc: SQLAlchemyError, url: str | None = None) -> EdgeGateError:
    """A database failure as one line naming the database and the cause: an environment
    failure (exit 3), since the input that named it was fine."""
    cause = failure_cause(exc) or f"{type(exc).__name__}: {first_line(exc)}"
    where = url or (_opened[-1] if _opened else default_url())
    return EnvironmentFailure(f"database {where}: {cause}")


# URLs open_engine opened in this process, last one last: names the database in a failure
# that surfaces without it (the CLI's handler sees only the exception).
_opened: list[str] = []
