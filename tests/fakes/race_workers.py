"""Process bodies for the stored-data race tests (tests/test_stored_data.py): each is run in
several fresh processes at once, started together on a barrier so they really race."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def race(fn: Callable[..., Any], args_per_process: list[tuple[Any, ...]], timeout: float = 120) -> list[Any]:
    """Run fn(barrier, *args) in one spawned process per args tuple; returns each result
    (or the repr of the exception it raised), in order."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args_per_process), timeout=timeout)
    results = ctx.Queue()
    procs = [ctx.Process(target=_call, args=(fn, barrier, results, i, args)) for i, args in enumerate(args_per_process)]
    for p in procs:
        p.start()
    try:
        got = dict(results.get(timeout=timeout) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
    return [got[i] for i in range(len(procs))]


def _call(fn: Callable[..., Any], barrier: Any, results: Any, index: int, args: tuple[Any, ...]) -> None:
    try:
        out = fn(barrier, *args)
    except Exception as exc:  # noqa: BLE001  reported to the test, which asserts on it
        out = f"{type(exc).__name__}: {exc}"
    results.put((index, out))


def open_db(barrier: Any, url: str) -> str:
    from edgegate.db import ExperimentDB

    barrier.wait()
    ExperimentDB(url)
    return "ok"


def claim_golden(barrier: Any, url: str, worker: int) -> tuple[int, int]:
    """Start a baseline row, then claim the golden: (own run id, the golden returned)."""
    from edgegate.db import ExperimentDB

    db = ExperimentDB(url)
    rid = db.start_run(invocation=f"w{worker}", pipeline="p", device="d", variant="fp32",
                       model_digest=None, pack_digest=None, config_digest=None)
    barrier.wait()
    return rid, db.claim_golden("p", "d", rid)


def build_and_read(barrier: Any, root: str, keys: int) -> int:
    """Build (or find) `keys` cache entries, racing the others for each, and read every file
    of each entry at once and again a little later; returns how many reads failed."""
    from edgegate.artifacts import ArtifactCache

    cache = ArtifactCache(Path(root))
    failures = 0

    def build(d: Path) -> dict[str, Any]:
        for n in range(8):
            (d / f"f{n}.bin").write_bytes(bytes([n]) * 50_000)
        time.sleep(0.01)
        return {}

    barrier.wait()
    for k in range(keys):
        entry = cache.get_or_build("stage", {"k": k}, build)
        for _ in range(2):
            for name in entry.files:
                try:
                    entry.file(name).read_bytes()
                except FileNotFoundError:
                    failures += 1
            time.sleep(0.005)
    return failures
