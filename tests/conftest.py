"""Suite-wide set-up: one artifact cache shared by every test of a session.

Pipelines in different tests quantize, compile and search the same graphs over and over; the
artifact cache is content-addressed, written atomically and safe to share between processes
(pytest-xdist workers, CLI subprocesses), so the session shares one (``EDGEGATE_CACHE``), and
each expensive deterministic step runs once per session instead of once per test. A test about
cold behaviour (what a first run computes, what ``--no-cache`` recomputes) clears the variable
and gets its home's own cache. An ``EDGEGATE_CACHE`` set by the caller is left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_OWNED = "EDGEGATE_TEST_CACHE_OWNER"


def pytest_configure(config: pytest.Config) -> None:
    # The controller (or a plain pytest run) makes the directory; xdist workers inherit it.
    if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("EDGEGATE_CACHE"):
        return
    os.environ["EDGEGATE_CACHE"] = tempfile.mkdtemp(prefix="edgegate-test-cache-")
    os.environ[_OWNED] = str(os.getpid())


def pytest_unconfigure(config: pytest.Config) -> None:
    if os.environ.get(_OWNED) == str(os.getpid()):
        shutil.rmtree(os.environ.pop("EDGEGATE_CACHE"), ignore_errors=True)
        os.environ.pop(_OWNED, None)
