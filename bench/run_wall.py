"""Wall time of `make run`'s pipeline, per stage: cold (empty cache and database: FP32
baseline, quantize, compile, benchmark, score, reproducibility double run, adversarial search)
and warm (nothing changed: golden stored, quantize and compile cached, deterministic host
results reused, benchmark taken again).

    python bench/run_wall.py [--pipeline pipelines/person_detect.yaml] [--warm-runs 1]

Each run is the real CLI in a subprocess (`edgegate run PIPELINE --json-out ...`) against a
scratch EDGEGATE_HOME and SQLite database, so nothing in the checkout's .edgegate/ is touched.
Stage times are read from the progress lines (`... done (12.3 s)`). The warm report must
match the cold one in every quality metric and gate status (timings are measured again).
Writes bench/results/run_wall.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = re.compile(r"^edgegate: (.+) done \(([\d.]+) s\)$")


def timed_run(pipeline: str, env: dict[str, str], report: Path) -> dict:
    exe = Path(sys.executable).with_name("edgegate")
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), "run", pipeline, "--json-out", str(report)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    stages = [(m[1], float(m[2])) for line in proc.stderr.splitlines() if (m := STAGE.match(line))]
    return {"wall_s": round(wall, 1), "exit_code": proc.returncode, "stages": stages,
            "libnative_on_terminal": "LIBNATIVE" in proc.stderr + proc.stdout, "stdout": proc.stdout}


def quality(report: Path) -> dict:
    """What must not change between a cold and a warm run: every metric EdgeGate computed
    (source `computed`) and every gate not on a timing; timings are measured again."""
    r = json.loads(report.read_text())
    metrics = {k: v["value"] for k, v in r["candidate"]["metrics"].items() if v["source"] == "computed"}
    return {"metrics": metrics, "gates": [(g["expr"], g["status"]) for g in r["gates"]
                                          if g["source"] in (None, "computed")],
            "reused": r["candidate"].get("reused"), "passed": r["verdict"]["passed"]}


def differences(a: dict, b: dict) -> list[str]:
    out = [f"{k}: {a['metrics'].get(k)} vs {b['metrics'].get(k)}"
           for k in sorted(set(a["metrics"]) | set(b["metrics"])) if a["metrics"].get(k) != b["metrics"].get(k)]
    out += [f"gate {x} vs {y}" for x, y in zip(a["gates"], b["gates"]) if x != y]
    return out + ([f"verdict {a['passed']} vs {b['passed']}"] if a["passed"] != b["passed"] else [])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", default="pipelines/person_detect.yaml")
    ap.add_argument("--warm-runs", type=int, default=1)
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="eg-wall-"))
    env = {**os.environ, "EDGEGATE_HOME": str(scratch / "home"), "EDGEGATE_DB": f"sqlite:///{scratch / 'eg.db'}"}
    env.pop("EDGEGATE_CACHE", None)
    runs = []
    try:
        for i in range(1 + args.warm_runs):
            report = scratch / f"report{i}.json"
            r = timed_run(args.pipeline, env, report)
            if r["exit_code"] not in (0, 1):
                print(r["stdout"][-2000:], file=sys.stderr)
                print(f"run {i} failed with exit code {r['exit_code']}", file=sys.stderr)
                return 1
            r["quality"] = quality(report)
            runs.append(r)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cold, warms = runs[0], runs[1:]
    diffs = [differences(cold["quality"], w["quality"]) for w in warms]
    same = not any(diffs)
    result = {
        "pipeline": args.pipeline,
        "cold_s": cold["wall_s"],
        "warm_s": [w["wall_s"] for w in warms],
        "cold_stages": cold["stages"],
        "warm_stages": [w["stages"] for w in warms],
        "warm_report_same_as_cold": same,
        "warm_differences": diffs,
        "cold_metrics": cold["quality"]["metrics"],
        "warm_reused": [w["quality"]["reused"] for w in warms],
        "libnative_on_terminal": any(r["libnative_on_terminal"] for r in runs),
        "exit_code": cold["exit_code"],
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "note": "cold = FP32 baseline + AIMET quantize + QNN compile + benchmark + score + reproducibility + "
                "adversarial search; warm = golden, quantize, compile and deterministic host results reused, "
                "benchmark measured again",
    }
    out_path = ROOT / "bench" / "results" / "run_wall.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    for name, r in [("cold", cold), *((f"warm {i + 1}", w) for i, w in enumerate(warms))]:
        print(f"{name}: {r['wall_s']:.1f} s")
        for stage, secs in r["stages"]:
            print(f"  {secs:7.1f} s  {stage}")
    print(f"warm report same as cold (quality metrics, gates): {same}")
    for d in diffs:
        for line in d:
            print(f"  differs: {line}")
    print(f"written to {out_path.relative_to(ROOT)}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
