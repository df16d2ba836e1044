"""Does the latency comparison cry wolf? A/A false alarms and 5% slowdown detection.

Real repeated runs: the FP32 MTCNN graphs are benchmarked N times on ONNX Runtime CPU, each
time in a fresh benchmark worker process (exactly as a pipeline run does), at the pipeline
default repeat count. Then, with EdgeGate's default thresholds:

* false-alarm rate: over every pair of runs (same model), how often `compare_metrics` calls
  inference_time_ms "regressed" (target <= 1%);
* detection rate: the same pairs with the candidate's samples slowed by 5%
  (every sample x 1.05), how often it is "regressed" (target >= 95%).

    python bench/aa_false_alarm.py [--runs 24] [--repeats DEFAULT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgegate.compare import Evidence, compare_metrics  # noqa: E402
from edgegate.models import GraphSource, export_fp32_onnx  # noqa: E402
from edgegate.spec import BenchmarkSpec  # noqa: E402
from edgegate.targets.local import CpuTarget  # noqa: E402
from edgegate.zoo.mtcnn import MTCNNAdapter  # noqa: E402


def _status(base: dict[str, list[float]], cand: dict[str, list[float]], threshold=None) -> str:
    b = sum(float(np.median(v)) for v in base.values())
    c = sum(float(np.median(v)) for v in cand.values())
    ev = Evidence(baseline_latency=base, candidate_latency=cand)
    return compare_metrics({"inference_time_ms": b}, {"inference_time_ms": c}, threshold, evidence=ev)["metrics"][
        "inference_time_ms"
    ]["status"]


def main() -> int:
    import logging

    logging.getLogger("edgegate.compare").setLevel(logging.ERROR)  # one warning per flagged pair otherwise
    defaults = BenchmarkSpec()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=defaults.repeats)
    ap.add_argument("--warmup", type=int, default=defaults.warmup)
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: ORT's, all cores)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eg-aa-"))
    adapter = MTCNNAdapter(rnet_batch=16, onet_batch=4)
    shapes = adapter.expected_inputs()
    target = CpuTarget("cpu", intra_op_threads=args.threads)
    compiled, feeds = [], {}
    rng = np.random.default_rng(0)
    for g, outs in (("pnet", ("prob", "reg")), ("rnet", ("prob", "reg")), ("onet", ("prob", "reg", "landmarks"))):
        (name, shape), = shapes[g].items()
        src = GraphSource(g, f"edgegate.zoo.mtcnn:{g}", {}, None, None, (name,), (shape,), outs)
        path = export_fp32_onnx(src, work / f"{g}.onnx")
        compiled.append(target.compile(g, path, work / "compiled"))
        feeds[g] = {name: rng.standard_normal(shape).astype(np.float32)}

    t0 = time.perf_counter()
    runs = []
    for i in range(args.runs):
        res = target.benchmark(compiled, feeds, warmup=args.warmup, repeats=args.repeats, min_seconds=0.0,
                               work_dir=work / f"run{i}")
        runs.append({t.graph: list(t.samples_ms) for t in res.timings})
    bench_s = time.perf_counter() - t0

    pairs = list(itertools.permutations(range(len(runs)), 2))
    false_alarms = sum(_status(runs[a], runs[b]) == "regressed" for a, b in pairs)
    detected = sum(
        _status(runs[a], {g: [x * 1.05 for x in s] for g, s in runs[b].items()}) == "regressed" for a, b in pairs
    )
    # The same pairs at other latency thresholds: where the operating point would be.
    sweep = {}
    for thr in ("3%", "5%", "8%", "10%"):
        fa = sum(_status(runs[a], runs[b], {"latency": thr}) == "regressed" for a, b in pairs) / len(pairs)
        det = sum(
            _status(runs[a], {g: [x * 1.05 for x in s] for g, s in runs[b].items()}, {"latency": thr}) == "regressed"
            for a, b in pairs
        ) / len(pairs)
        sweep[thr] = {"false_alarm_rate": fa, "detection_rate_5pct": det}
    medians = [sum(float(np.median(v)) for v in r.values()) for r in runs]
    result = {
        "runs": args.runs,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "pairs": len(pairs),
        "false_alarm_rate": false_alarms / len(pairs),
        "detection_rate_5pct": detected / len(pairs),
        "cascade_median_ms": {"min": min(medians), "median": float(np.median(medians)), "max": max(medians)},
        "run_to_run_cv": float(np.std(medians) / np.mean(medians)),
        "threshold_sweep": sweep,
        "benchmark_wall_s": round(bench_s, 1),
        "source": "host-cpu (ONNX Runtime CPU, FP32 MTCNN graphs, fresh worker process per run)",
    }
    out = ROOT / "bench" / "results" / "aa_false_alarm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"A/A false-alarm rate: {result['false_alarm_rate']:.2%} over {len(pairs)} ordered pairs of "
          f"{args.runs} real runs ({args.repeats} repeats each; target <= 1%)")
    print(f"5% slowdown detection rate: {result['detection_rate_5pct']:.2%} (target >= 95%)")
    print(f"cascade median {result['cascade_median_ms']['median']:.3f} ms, run-to-run CV {result['run_to_run_cv']:.2%}")
    for thr, r in sweep.items():
        print(f"  latency threshold {thr}: false alarms {r['false_alarm_rate']:.2%}, 5% detection {r['detection_rate_5pct']:.2%}")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
