"""Does the latency comparison cry wolf? A/A false alarms and 5% slowdown detection.

Real repeated runs: the FP32 MTCNN graphs (P-Net, R-Net, O-Net) are benchmarked on ONNX
Runtime CPU, each time in a fresh benchmark worker process, exactly as a pipeline run does
(pipeline default warmup and repeats per process). The same model is on both sides (A/A).

1. Interleaved A/B (``targets.base.benchmark_interleaved``, what ``edgegate compare --rebench``
   does): N process pairs are measured back to back (A B, B A, A B, ...). A comparison at
   the default process count K is K of those pairs; many comparisons are drawn as random
   sets of K pairs. With EdgeGate's default thresholds, `compare_metrics` (paired by
   process: Wilcoxon signed-rank + bootstrap CI) decides:
   * false-alarm rate: how often inference_time_ms is "regressed" (target <= 1%);
   * detection rate: the same comparisons with the candidate's samples slowed by 5%
     (every sample x 1.05), how often it is "regressed" (target >= 95%).
2. Stored runs benchmarked at different times (``edgegate compare`` on two runs): the A
   processes, cut into consecutive runs of K, every ordered pair of runs compared unpaired
   (Mann-Whitney U on process values). Slow drift of the machine between runs counts here.

    python bench/aa_false_alarm.py [--pairs 200] [--comparisons 2000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgegate.compare import Evidence, compare_metrics  # noqa: E402
from edgegate.run.models import GraphSource, export_fp32_onnx  # noqa: E402
from edgegate.config import BenchmarkSpec  # noqa: E402
from edgegate.targets.base import benchmark_interleaved  # noqa: E402
from edgegate.targets.local import CpuTarget  # noqa: E402
from edgegate.zoo.mtcnn import MTCNNAdapter  # noqa: E402

GRAPHS = ("pnet", "rnet", "onet")


def _side(procs: list[dict[str, list[float]]], slow: float = 1.0) -> tuple[dict, dict]:
    """Per-process samples -> (graph -> samples, graph -> process ids), process i tagged i."""
    samples = {g: [x * slow for p in procs for x in p[g]] for g in GRAPHS}
    ids = {g: [i for i, p in enumerate(procs) for _ in p[g]] for g in GRAPHS}
    return samples, ids


def _status(base: list[dict], cand: list[dict], *, paired: bool, slow: float = 1.0, threshold=None) -> str:
    bs, bi = _side(base)
    cs, ci = _side(cand, slow)
    b = sum(float(np.median(v)) for v in bs.values())
    c = sum(float(np.median(v)) for v in cs.values())
    ev = Evidence(baseline_latency=bs, candidate_latency=cs, baseline_latency_process=bi,
                  candidate_latency_process=ci, latency_paired=paired)
    return compare_metrics({"inference_time_ms": b}, {"inference_time_ms": c}, threshold, evidence=ev)["metrics"][
        "inference_time_ms"
    ]["status"]


def _rates(comparisons, *, paired: bool, threshold=None) -> dict[str, float]:
    fa = sum(_status(a, b, paired=paired, threshold=threshold) == "regressed" for a, b in comparisons)
    det = sum(_status(a, b, paired=paired, slow=1.05, threshold=threshold) == "regressed" for a, b in comparisons)
    return {"false_alarm_rate": fa / len(comparisons), "detection_rate_5pct": det / len(comparisons)}


def main() -> int:
    logging.getLogger("edgegate.compare").setLevel(logging.ERROR)  # one warning per flagged comparison otherwise
    defaults = BenchmarkSpec()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=200, help="interleaved A/B process pairs to measure")
    ap.add_argument("--comparisons", type=int, default=2000, help="interleaved comparisons drawn from them")
    ap.add_argument("--processes", type=int, default=defaults.processes, help="processes per side per comparison")
    ap.add_argument("--repeats", type=int, default=defaults.repeats)
    ap.add_argument("--warmup", type=int, default=defaults.warmup)
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: ORT's, all cores)")
    args = ap.parse_args()
    k = args.processes

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
    a_res, b_res = benchmark_interleaved(
        target, (compiled, feeds), (compiled, feeds), warmup=args.warmup, repeats=args.repeats,
        min_seconds=0.0, processes=args.pairs, work_dir=work / "ab",
    )
    bench_s = time.perf_counter() - t0

    def per_process(res) -> list[dict[str, list[float]]]:
        out = [{g: [] for g in GRAPHS} for _ in range(args.pairs)]
        for t in res.timings:
            for x, p in zip(t.samples_ms, t.process_ids):
                out[p][t.graph].append(x)
        return out

    pa, pb = per_process(a_res), per_process(b_res)
    draw = np.random.default_rng(1)
    interleaved = []
    for _ in range(args.comparisons):
        idx = sorted(draw.choice(args.pairs, size=k, replace=False))
        interleaved.append(([pa[i] for i in idx], [pb[i] for i in idx]))
    runs = [pa[i:i + k] for i in range(0, args.pairs - k + 1, k)]
    stored = list(itertools.permutations(runs, 2))

    result_i = _rates(interleaved, paired=True)
    result_s = _rates(stored, paired=False)
    # Fewer processes a side, drawn from the same measured pairs: where the default comes from.
    by_processes = {}
    for kk in (3, 5, 10, 15):
        if kk < k:
            picks = [sorted(draw.choice(args.pairs, size=kk, replace=False)) for _ in range(500)]
            by_processes[kk] = _rates([([pa[i] for i in idx], [pb[i] for i in idx]) for idx in picks], paired=True)
    sweep = {}
    for thr in ("3%", "5%"):
        sweep[thr] = {"interleaved": _rates(interleaved[:500], paired=True, threshold={"latency": thr}),
                      "stored_runs": _rates(stored, paired=False, threshold={"latency": thr})}

    def cascade(p):
        return sum(float(np.median(p[g])) for g in GRAPHS)

    va, vb = np.array([cascade(p) for p in pa]), np.array([cascade(p) for p in pb])
    run_medians = [float(np.median([cascade(p) for p in r])) for r in runs]
    result = {
        "processes_per_side": k,
        "repeats_per_process": args.repeats,
        "warmup": args.warmup,
        "interleaved": {"process_pairs_measured": args.pairs, "comparisons": len(interleaved), **result_i},
        "stored_runs": {"runs": len(runs), "ordered_pairs": len(stored), **result_s,
                        "run_median_ms": {"min": min(run_medians), "max": max(run_medians)}},
        "process_cascade_cv": float(np.std(va) / np.mean(va)),
        "paired_log_ratio_sd": float(np.std(np.log(vb / va))),
        "threshold_sweep": sweep,
        "interleaved_by_processes": by_processes,
        "benchmark_wall_s": round(bench_s, 1),
        "source": "host-cpu (ONNX Runtime CPU, FP32 MTCNN graphs, fresh worker process per process slot)",
    }
    out = ROOT / "bench" / "results" / "aa_false_alarm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"interleaved A/B, {k} process pairs per comparison ({args.repeats} repeats each), "
          f"{len(interleaved)} comparisons drawn from {args.pairs} measured pairs:")
    print(f"  A/A false-alarm rate: {result_i['false_alarm_rate']:.2%} (target <= 1%)")
    print(f"  5% slowdown detection rate: {result_i['detection_rate_5pct']:.2%} (target >= 95%)")
    print(f"stored runs at different times, {k} processes each, {len(stored)} ordered pairs of {len(runs)} runs:")
    print(f"  A/A false-alarm rate: {result_s['false_alarm_rate']:.2%}; 5% detection {result_s['detection_rate_5pct']:.2%}"
          f"  (run medians {min(run_medians):.3f}-{max(run_medians):.3f} ms)")
    print(f"process cascade CV {result['process_cascade_cv']:.2%}, paired log-ratio sd {result['paired_log_ratio_sd']:.2%}")
    for thr, r in sweep.items():
        print(f"  latency threshold {thr}: interleaved FA {r['interleaved']['false_alarm_rate']:.2%} / "
              f"det {r['interleaved']['detection_rate_5pct']:.2%}; stored FA {r['stored_runs']['false_alarm_rate']:.2%} / "
              f"det {r['stored_runs']['detection_rate_5pct']:.2%}")
    for kk, r in by_processes.items():
        print(f"  interleaved with {kk} processes a side: FA {r['false_alarm_rate']:.2%} / "
              f"det {r['detection_rate_5pct']:.2%} (500 comparisons)")
    print(f"benchmark wall {bench_s:.0f} s; written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
