"""Scoring throughput on the QNN HTP emulator: one process vs prediction workers (--jobs),
and how many cores one emulator session keeps busy (what the default --jobs is sized on).

    python bench/scoring_throughput.py [--pipeline pipelines/person_detect.yaml] [--samples 24]

Builds the pipeline's INT8 graphs for its device (quantize + compile, in a scratch cache),
then predicts the first `samples` eval samples:

* in this process, as `edgegate run` does with --jobs 1: wall time, and the CPU time the
  process used over that wall time (= cores one session keeps busy);
* the same, pinned to one core (os.sched_setaffinity), in a fresh process;
* with 2 worker processes (--jobs 2, run.parallel): wall time, worker start included.

From the per-session core use it derives what 8 cores would give: 8 / cores-per-session
sessions at the single-session rate (an estimate, printed as such). Writes
bench/results/scoring_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build(pipeline: str, home: Path):
    from edgegate.artifacts import ArtifactCache
    from edgegate.progress import Progress
    from edgegate.run.context import load_context
    from edgegate.run.runners import collect_graph_inputs, cpu_runner
    from edgegate.run.stages import compile_graphs, export_graphs, quantize_graphs
    from edgegate.targets.base import Variant

    ctx = load_context(pipeline, home=home)
    cache = ArtifactCache(home / "artifacts")
    fp32 = export_graphs(ctx, cache)
    q = ctx.spec.quantization.calibration
    calib = collect_graph_inputs(ctx.adapter, cpu_runner(fp32), ctx.pack.samples(q.split, q.samples),
                                 Progress(quiet=True), "calibration")
    quantized = quantize_graphs(ctx, fp32, calib, cache, Progress(quiet=True))
    compiled = compile_graphs(ctx.target, {g: x.qdq_onnx for g, x in quantized.items()}, cache, Variant.INT8)
    return ctx, compiled


def one_process(pipeline: str, home: Path, n: int) -> dict:
    """Predict n samples in this process; wall, CPU time, cores busy."""
    from edgegate.packs.adapters import predict_sample
    from edgegate.run.runners import variant_runner

    ctx, compiled = build(pipeline, home)
    samples = ctx.pack.samples(ctx.spec.evaluation.split)[:n]
    runner = variant_runner(ctx.target, compiled)
    predict_sample(ctx.adapter, samples[0], runner)  # sessions opened, first call out of the way
    c0, t0 = _cpu_s(), time.perf_counter()
    for s in samples:
        predict_sample(ctx.adapter, s, runner)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return {"samples": n, "wall_s": round(wall, 2), "samples_per_s": round(n / wall, 3),
            "cpu_s": round(cpu, 2), "cores_busy": round(cpu / wall, 2)}


def in_fresh_process(args: list[str], pin: set[int] | None) -> dict:
    env = {**os.environ}
    code = ("import json, os, sys; sys.path.insert(0, %r); "
            "from bench.scoring_throughput import one_process; from pathlib import Path; "
            "%s print(json.dumps(one_process(%r, Path(%r), %d)))")
    pin_code = f"os.sched_setaffinity(0, {sorted(pin)!r});" if pin else ""
    out = subprocess.run([sys.executable, "-c", code % (str(ROOT), pin_code, *args)], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def workers(pipeline: str, home: Path, n: int, jobs: int) -> dict:
    from edgegate.run.parallel import predict_in_workers, split_evenly

    ctx, compiled = build(pipeline, home)
    samples = ctx.pack.samples(ctx.spec.evaluation.split)[:n]
    slices = [(samples[0].split, ids) for ids in split_evenly([s.id for s in samples], jobs)]
    t0 = time.perf_counter()
    predict_in_workers(ctx.spec.source_path, str(ctx.device.source_path), home, compiled, slices, jobs, baseline=False)
    wall = time.perf_counter() - t0
    return {"jobs": jobs, "samples": n, "wall_s": round(wall, 2), "samples_per_s": round(n / wall, 3),
            "note": "wall includes spawning the workers and loading the context and graphs in each"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", default="pipelines/person_detect.yaml")
    ap.add_argument("--samples", type=int, default=24)
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="eg-throughput-"))
    build(a.pipeline, home)  # quantize + compile once; every measurement below reads the cache
    cores = len(os.sched_getaffinity(0))
    single = in_fresh_process([a.pipeline, str(home), a.samples], None)
    pinned = in_fresh_process([a.pipeline, str(home), a.samples], {min(os.sched_getaffinity(0))})
    two = workers(a.pipeline, home, a.samples, 2)
    per_session = max(1.0, single["cores_busy"])
    result = {
        "pipeline": a.pipeline,
        "host_cores": cores,
        "one_process": single,
        "one_process_pinned_to_one_core": pinned,
        "two_workers": two,
        "cores_per_session": per_session,
        "expected_on_8_cores": {
            "sessions": int(8 // per_session),
            "samples_per_s": round(single["samples_per_s"] * (8 // per_session), 3),
            "note": "estimate: 8 / cores-per-session sessions at the single-session rate, worker start-up not "
                    "counted; not measured here",
        },
        "machine": platform.machine(),
    }
    out = ROOT / "bench" / "results" / "scoring_throughput.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"one process:          {single['samples_per_s']:.2f} samples/s ({single['cores_busy']:.2f} cores busy)")
    print(f"pinned to one core:   {pinned['samples_per_s']:.2f} samples/s ({pinned['cores_busy']:.2f} cores busy)")
    print(f"2 worker processes:   {two['samples_per_s']:.2f} samples/s (start-up included)")
    print(f"expected on 8 cores:  {result['expected_on_8_cores']['samples_per_s']:.2f} samples/s "
          f"({result['expected_on_8_cores']['sessions']} sessions; estimate)")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
