#!/usr/bin/env python
"""The robotics scenario through the Python API: is the AIMET INT8 person detector good
enough to ship, compared with its FP32 baseline?

    python examples/regression_test.py [--device cpu] [--pipeline pipelines/person_detect.yaml]

Runs the pipeline (FP32 golden on first use, AIMET INT8, compile, benchmark, score), then
prints the comparison table and the verdict. Every timing row names where it was measured:
on `htp-sim` the INT8 numbers come from the QNN HTP emulator on this host, which is not
device latency, so no speedup is claimed across sources.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgegate.errors import EdgeGateError  # noqa: E402
from edgegate.run.pipeline import RunOptions, run_pipeline  # noqa: E402
from edgegate.progress import Progress  # noqa: E402

ROWS = [
    ("Latency", "inference_time_ms", "{:.2f} ms"),
    ("Memory", "peak_memory_mb", "{:.1f} MB"),
    ("Model size", "model_size_kb", "{:.0f} KB"),
    ("Accuracy", "accuracy", "{:.3f}"),
    ("mAP@0.5", "map50", "{:.3f}"),
    ("F1", "f1", "{:.3f}"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description="FP32 vs AIMET INT8 person detector, compared.")
    ap.add_argument("--pipeline", default=str(ROOT / "pipelines" / "person_detect.yaml"))
    ap.add_argument("--device", default=None, help="device name or path (default: the pipeline's)")
    args = ap.parse_args()
    try:
        result = run_pipeline(args.pipeline, RunOptions(device=args.device, progress=Progress()))
    except EdgeGateError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    report = result.report  # built once, by the run
    base, cand = report["baseline"]["metrics"], report["candidate"]["metrics"]

    print(f"\n{result.pipeline} on {result.device['name']} ({result.device['kind']})\n")
    header = f"{'Metric':<12} | {'Baseline (FP32)':>28} | {'Optimized (INT8)':>31} | {'Delta':>14}"
    print(header)
    print("-" * len(header))
    for label, key, fmt in ROWS:
        b, c = base.get(key), cand.get(key)
        if b is None or c is None:
            continue
        if b["source"] != c["source"]:
            delta = "n/a (sources)"
        else:
            delta = f"{c['value'] - b['value']:+.3g}"
            if b["value"]:
                delta += f" ({(c['value'] - b['value']) / b['value'] * 100:+.0f}%)"
        bs = f"{fmt.format(b['value'])} [{b['source']}]"
        cs = f"{fmt.format(c['value'])} [{c['source']}]"
        print(f"{label:<12} | {bs:>28} | {cs:>31} | {delta:>14}")

    v = report["verdict"]
    print(f"\nFinal Verdict: {'PASS' if v['passed'] else 'FAIL'}")
    for key, label in (("speedup", "Speedup"), ("memory_reduction", "Memory reduction")):
        r = v[key]
        print(f"  {label}: " + (f"{r['value']:.2f}x ({r['source']})" if r["value"] is not None else r["note"]))
    for g in report["gates"]:
        print(f"  gate {g['expr']}: {g['status']}")
    return 0 if v["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
