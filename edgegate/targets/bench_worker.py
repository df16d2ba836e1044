"""Benchmark worker: a fresh process that loads compiled graphs and times them.

Run as ``python -m edgegate.targets.bench_worker REQUEST.json RESULT.json``.

Why a fresh process: its resident set after importing onnxruntime is a clean baseline,
and Linux's per-process resident high-water mark (VmHWM, reset through
``/proc/self/clear_refs``) then measures what loading and running the graphs cost,
with nothing left over from quantization or compilation in the parent.

Memory reported:
* ``load_peak_memory_mb``: VmHWM after opening every graph's session, minus the baseline;
* ``peak_memory_mb``: VmHWM while the loaded graphs run their warmup and timed repeats,
  minus the baseline (all sessions stay loaded, as they do when the cascade runs).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def timed_loop(run, feeds, *, warmup: int, repeats: int, min_seconds: float = 0.0) -> list[int]:
    """Warmup, then time `repeats` calls (at least `min_seconds` in all); nanoseconds each.

    As bare as a hand-written loop: bench/harness_overhead.py measures the difference.
    """
    perf = time.perf_counter_ns
    for _ in range(warmup):
        run(None, feeds)
    min_ns = min_seconds * 1e9
    samples: list[int] = []
    append = samples.append
    started = perf()
    while len(samples) < repeats or (perf() - started) < min_ns:
        t0 = perf()
        run(None, feeds)
        append(perf() - t0)
    return samples


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    import numpy as np

    from edgegate.targets.ort_runtime import open_session, qnn_devices

    if request["kind"] == "qnn":
        qnn_devices()
    baseline_kb = _status_kb("VmRSS")
    can_reset = _reset_peak()

    sessions = []
    load_ms = []
    for g in request["graphs"]:
        t0 = time.perf_counter()
        sess = open_session(
            g["artifact"],
            request["kind"],
            request["provider_options"],
            allow_cpu_fallback=request.get("allow_cpu_fallback", False),
            intra_op_threads=request.get("intra_op_threads"),
        )
        load_ms.append((time.perf_counter() - t0) * 1e3)
        with np.load(g["inputs"]) as data:
            feeds = {k: data[k] for k in data.files}
        sessions.append((g["graph"], sess, feeds))
    load_peak_kb = _status_kb("VmHWM")
    _reset_peak()

    warmup = int(request["warmup"])
    repeats = int(request["repeats"])
    min_seconds = float(request.get("min_seconds", 0.0))
    timings = []
    for (graph, sess, feeds), lms in zip(sessions, load_ms):
        samples = timed_loop(sess.run, feeds, warmup=warmup, repeats=repeats, min_seconds=min_seconds)
        timings.append(
            {
                "graph": graph,
                "samples_ms": [s / 1e6 for s in samples],
                "warmup": warmup,
                "load_time_ms": lms,
            }
        )
    peak_kb = _status_kb("VmHWM")
    result = {
        "timings": timings,
        "baseline_rss_mb": baseline_kb / 1024,
        "load_peak_memory_mb": (load_peak_kb - baseline_kb) / 1024 if can_reset else None,
        "peak_memory_mb": (peak_kb - baseline_kb) / 1024 if can_reset else None,
        "memory_method": (
            "VmHWM of a fresh worker process (reset via /proc/self/clear_refs) "
            "minus its resident set after importing onnxruntime"
            if can_reset
            else "unavailable: /proc/self/clear_refs not writable"
        ),
    }
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
