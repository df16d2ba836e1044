"""Concurrent writers for ExperimentDB: what a fleet's cells write, without running models.

``write_runs`` is what one fleet worker writes for ``runs`` cells: a run row, its metrics,
its latency samples, a golden, a finished status. ``concurrent_writes`` starts ``workers``
processes doing it against one database at once; the tests count every row afterwards and
bench/fleet_bench.py times it.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

METRICS = ("inference_time_ms", "latency_min_ms", "map50", "recall", "precision", "accuracy", "model_size_mb")
GRAPHS = ("pnet", "rnet", "onet")


def write_runs(url: str, worker: int, runs: int, samples: int) -> dict[str, int]:
    """Write ``runs`` complete runs; return how many rows of each kind this worker wrote."""
    from edgegate.db import ExperimentDB, StoredMetric

    db = ExperimentDB(url)
    counts = {"runs": 0, "metrics": 0, "latency_samples": 0, "writes": 0}
    for i in range(runs):
        rid = db.start_run(
            invocation=f"w{worker}-{i}", pipeline=f"pipe{i % 2}", device=f"dev{worker}", variant="int8",
            model_digest="sha256:m", pack_digest="sha256:p", config_digest="sha256:c",
            details={"worker": worker, "i": i},
        )
        db.add_metrics(rid, [StoredMetric(m, float(worker * 1000 + i), "ms", "host-cpu") for m in METRICS])
        for g in GRAPHS:
            db.add_latency_samples(rid, g, [float(k) for k in range(samples)], "host-cpu")
        db.set_golden(f"pipe{i % 2}", f"dev{worker}", rid)
        db.finish_run(rid, "passed")
        counts["runs"] += 1
        counts["metrics"] += len(METRICS)
        counts["latency_samples"] += len(GRAPHS) * samples
        counts["writes"] += 4 + len(GRAPHS)  # transactions: start, metrics, 3x samples, golden, finish
    return counts


def concurrent_writes(url: str, workers: int = 8, runs: int = 20, samples: int = 50,
                      start_method: str = "fork") -> dict[str, float]:
    """Run ``workers`` processes of ``write_runs`` at once; totals and transactions per second."""
    from edgegate.db import ExperimentDB

    ExperimentDB(url)  # create the schema once, as a fleet's coordinator does
    ctx = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        # start every process before the clock: spawning is not the database's time
        list(pool.map(time.sleep, [0.0] * workers))
        t0 = time.perf_counter()
        results = list(pool.map(write_runs, [url] * workers, range(workers), [runs] * workers, [samples] * workers))
        wall = time.perf_counter() - t0
    total = {k: sum(r[k] for r in results) for k in results[0]}
    rows = total["runs"] * 2 + total["metrics"] + total["latency_samples"]  # run insert+update, metric and sample rows
    return {**total, "wall_s": wall, "transactions_per_s": total["writes"] / wall, "rows_per_s": rows / wall}
