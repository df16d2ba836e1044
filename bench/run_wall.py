"""Wall time of `make run`'s pipeline: cold (empty cache and database: FP32 baseline,
quantize, compile, benchmark, score) and warm (golden stored, quantize and compile cached).

    python bench/run_wall.py [--pipeline pipelines/person_detect.yaml] [--warm-runs 1]

Each run is the real CLI in a subprocess (`edgegate run ... --quiet`) against a scratch
EDGEGATE_HOME and SQLite database, so nothing in the checkout's .edgegate/ is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_run(pipeline: str, env: dict[str, str]) -> tuple[float, int, str]:
    exe = Path(sys.executable).with_name("edgegate")
    cmd = [str(exe), "run", pipeline, "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return wall, proc.returncode, proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", default="pipelines/person_detect.yaml")
    ap.add_argument("--warm-runs", type=int, default=1)
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="eg-wall-"))
    env = {**os.environ, "EDGEGATE_HOME": str(scratch / "home"), "EDGEGATE_DB": f"sqlite:///{scratch / 'eg.db'}"}
    try:
        cold, rc_cold, out = timed_run(args.pipeline, env)
        if rc_cold not in (0, 1):
            print(out, file=sys.stderr)
            print(f"cold run failed with exit code {rc_cold}", file=sys.stderr)
            return 1
        warms = []
        for _ in range(args.warm_runs):
            w, rc, _ = timed_run(args.pipeline, env)
            if rc not in (0, 1):
                print(f"warm run failed with exit code {rc}", file=sys.stderr)
                return 1
            warms.append(w)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "pipeline": args.pipeline,
        "cold_s": round(cold, 2),
        "warm_s": [round(w, 2) for w in warms],
        "exit_code": rc_cold,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "note": "cold = FP32 baseline + AIMET quantize + QNN compile + benchmark + score; "
        "warm = golden reused, quantize and compile from cache, benchmark + score again",
    }
    out_path = ROOT / "bench" / "results" / "run_wall.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.pipeline}: cold {cold:.1f} s, warm (cached) {', '.join(f'{w:.1f}' for w in warms)} s")
    print(f"written to {out_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
