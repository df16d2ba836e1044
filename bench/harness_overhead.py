"""Harness overhead: EdgeGate's timed loop vs a bare onnxruntime loop on the same session.

Target: <= 2 % overhead. Both loops run the same session and inputs, interleaved in rounds
so drift on the machine hits both alike; the figure is the median over rounds of
(edgegate_total - bare_total) / bare_total. Run on the FP32 P-Net on ONNX Runtime CPU
(~1 ms a call: a fast model is the hard case for overhead) and on the INT8 P-Net on the
QNN HTP emulator.

    python bench/harness_overhead.py [--rounds 15] [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgegate.run.models import GraphSource, export_fp32_onnx  # noqa: E402
from edgegate.targets.bench_worker import timed_loop  # noqa: E402
from edgegate.targets.ort_runtime import open_session  # noqa: E402


def bare_loop(run, feeds, n: int) -> list[int]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        run(None, feeds)
        out.append(time.perf_counter_ns() - t0)
    return out


def measure(sess, feeds, rounds: int, calls: int) -> dict:
    run = sess.run
    timed_loop(run, feeds, warmup=10, repeats=1)
    ratios, eg_medians, bare_medians = [], [], []
    for r in range(rounds):
        order = [("eg", None), ("bare", None)] if r % 2 == 0 else [("bare", None), ("eg", None)]
        totals = {}
        for which, _ in order:
            t0 = time.perf_counter_ns()
            if which == "eg":
                s = timed_loop(run, feeds, warmup=0, repeats=calls)
            else:
                s = bare_loop(run, feeds, calls)
            totals[which] = time.perf_counter_ns() - t0
            (eg_medians if which == "eg" else bare_medians).append(statistics.median(s) / 1e6)
        ratios.append((totals["eg"] - totals["bare"]) / totals["bare"])
    return {
        "overhead_median_pct": 100 * statistics.median(ratios),
        "overhead_rounds_pct": [round(100 * x, 3) for x in ratios],
        "edgegate_median_ms": statistics.median(eg_medians),
        "bare_median_ms": statistics.median(bare_medians),
        "rounds": rounds,
        "calls_per_round": calls,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--emulator-calls", type=int, default=10)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eg-bench-"))
    src = GraphSource("pnet", "edgegate.zoo.mtcnn:pnet", {}, None, None, ("image",), ((1, 3, 114, 170),), ("prob", "reg"))
    fp32 = export_fp32_onnx(src, work / "pnet.onnx")
    feeds = {"image": np.random.default_rng(0).standard_normal((1, 3, 114, 170)).astype(np.float32)}

    results = {"machine": platform.processor() or platform.machine(), "python": platform.python_version()}
    sess = open_session(str(fp32), "cpu", {})
    results["cpu_fp32_pnet"] = measure(sess, feeds, args.rounds, args.calls)

    # INT8 P-Net on the QNN HTP emulator (quantized without calibration data beyond one batch:
    # this measures the loop, not accuracy).
    from edgegate.run.quantize import QuantizeSettings, quantize_graph
    from edgegate.targets.local import QnnEmulatorTarget
    from edgegate.zoo.mtcnn import pnet

    q = quantize_graph(pnet(), ["image"], ["prob", "reg"], [(feeds["image"],)], QuantizeSettings(config="htp_v66"), work, "pnet")
    target = QnnEmulatorTarget("htp-sim", soc_model=None, htp_arch=68)
    compiled = target.compile("pnet", q.qdq_onnx, work / "compiled")
    emu = target.open(compiled)._sess
    results["emulator_int8_pnet"] = measure(emu, feeds, max(3, args.rounds // 3), args.emulator_calls)

    out = ROOT / "bench" / "results" / "harness_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    for k in ("cpu_fp32_pnet", "emulator_int8_pnet"):
        r = results[k]
        print(f"{k}: harness overhead {r['overhead_median_pct']:+.2f}% (median of {r['rounds']} rounds x "
              f"{r['calls_per_round']} calls; per call edgegate {r['edgegate_median_ms']:.3f} ms, "
              f"bare {r['bare_median_ms']:.3f} ms)")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
