"""ExperimentDB: runs, metrics, latency samples, artifacts and goldens (SQLAlchemy 2.x).

SQLite under ``.edgegate/`` by default (WAL, busy timeout), any SQLAlchemy URL (e.g.
PostgreSQL) by ``--db`` / ``EDGEGATE_DB``. Three modules, one concern each:

* ``schema``: the tables (ORM rows) and their creation, the stored format;
* ``engine``: the URL, the driver and opening a database;
* ``experiment``: ``ExperimentDB``, the API every caller uses.

Import from ``edgegate.db``; the names below are the public surface.
"""

from __future__ import annotations

from edgegate.db.engine import (
    DEFAULT_DB_DIR,
    database_error,
    default_url,
    engine_url,
    first_line,
    open_engine,
    pid_alive,
)
from edgegate.db.experiment import ExperimentDB, Run, StoredMetric, in_id_range
from edgegate.db.schema import (
    ADDED_COLUMNS,
    AihubJobRow,
    ArtifactRow,
    Base,
    ComparisonMetricRow,
    ComparisonRow,
    EvidenceRow,
    GoldenRow,
    LatencySampleRow,
    MetricRow,
    RunRow,
    create_tables,
    utcnow,
)

__all__ = [
    "ADDED_COLUMNS",
    "DEFAULT_DB_DIR",
    "AihubJobRow",
    "ArtifactRow",
    "Base",
    "ComparisonMetricRow",
    "ComparisonRow",
    "EvidenceRow",
    "ExperimentDB",
    "GoldenRow",
    "LatencySampleRow",
    "MetricRow",
    "Run",
    "RunRow",
    "StoredMetric",
    "create_tables",
    "database_error",
    "default_url",
    "engine_url",
    "first_line",
    "in_id_range",
    "open_engine",
    "pid_alive",
    "utcnow",
]
