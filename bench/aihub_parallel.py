"""Wall time of one pipeline on 8 AI Hub devices at once vs on one device, against the fake
AI Hub (tests/fakes/aihub_server.py) with fixed per-job delays.

    python bench/aihub_parallel.py [--devices 8] [--compile-s 15] [--profile-s 15] [--inference-s 5]

AI Hub's farm runs jobs in parallel, so N devices should cost about the wall time of one,
not N times it: the ratio printed is wall(N at once) / wall(1). Each run is the real CLI in
a subprocess (`edgegate run ... --quiet`, the MTCNN mini pipeline) talking to the fake over
HTTP through qai_hub. A first untimed run on its own device fills the quantize cache, so
the timed runs measure compile/profile/inference jobs and host glue, not AIMET. The job
delays are the fake's, not AI Hub's: the ratio is what this bench is for. The timed runs
share the machine's cores, so host-side work (Python start-up, FP32 export, adapter glue)
is what keeps the ratio above 1.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fakes.aihub_server import Device, FakeAihub  # noqa: E402

PIPELINE = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini_aihub.yaml"
TOKEN = "bench-token-not-a-secret"
ATTRS = ["chipset:qualcomm-qcs8250-proxy", "hexagon:v66", "framework:tflite", "framework:qnn", "framework:onnx"]


def device_file(d: Path, name: str) -> Path:
    path = d / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nkind: aihub\nchipset: qcs8250\narch: v66\ndevice: 'Bench {name}'\n"
        "poll_interval_s: 0.25\njob_timeout_s: 600\nmax_retries: 3\n"
    )
    return path


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(name: str, devices_dir: Path, env: dict[str, str], db: str) -> dict:
    cmd = [sys.executable, "-m", "edgegate.cli", "run", str(PIPELINE), "--device", str(devices_dir / f"{name}.yaml"),
           "--db", db, "--evidence", "never", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=env["EDGEGATE_HOME"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {"device": name, "wall_s": round(wall, 2), "exit": proc.returncode}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--compile-s", type=float, default=15.0)
    ap.add_argument("--profile-s", type=float, default=15.0)
    ap.add_argument("--inference-s", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "aihub_parallel.json")
    args = ap.parse_args()

    names = ["warmup", "single"] + [f"par{i}" for i in range(args.devices)]
    with tempfile.TemporaryDirectory(prefix="edgegate-bench-aihub-") as tmp_s, \
            FakeAihub(TOKEN, devices=[Device(f"Bench {n}", "12", ATTRS) for n in names]) as fake:
        tmp = Path(tmp_s)
        devices_dir = tmp / "devices"
        devices_dir.mkdir()
        for n in names:
            device_file(devices_dir, n)
        env = {**os.environ, "QAIHUB_CLIENT_INI": str(fake.write_client_ini(tmp / "client.ini")),
               "EDGEGATE_HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1"}
        env.pop("EDGEGATE_AIHUB_TOKEN", None)
        (tmp / "home").mkdir()
        db = f"sqlite:///{tmp / 'bench.db'}"

        print("warm-up run (fills the quantize cache; not timed) ...", flush=True)
        run("warmup", devices_dir, env, db)
        for kind, delay in (("compile", args.compile_s), ("profile", args.profile_s), ("inference", args.inference_s)):
            fake.behave(kind, delay_s=delay)
        jobs_before = len(fake.submissions)

        print("1 device ...", flush=True)
        cpu0 = children_cpu_s()
        single = run("single", devices_dir, env, db)
        cpu_single = children_cpu_s() - cpu0
        jobs_single = len(fake.submissions) - jobs_before

        print(f"{args.devices} devices at once ...", flush=True)
        t0, cpu0 = time.perf_counter(), children_cpu_s()
        with ThreadPoolExecutor(args.devices) as pool:
            parallel = list(pool.map(lambda n: run(n, devices_dir, env, db), names[2:]))
        wall_n, cpu_n = time.perf_counter() - t0, children_cpu_s() - cpu0
        load = os.getloadavg()

    ratio = wall_n / single["wall_s"]
    result = {
        "bench": "aihub_parallel",
        "pipeline": str(PIPELINE.relative_to(ROOT)),
        "fake_job_delays_s": {"compile": args.compile_s, "profile": args.profile_s, "inference": args.inference_s},
        "jobs_per_pipeline": jobs_single,
        "wall_1_device_s": single["wall_s"],
        f"wall_{args.devices}_devices_s": round(wall_n, 2),
        "ratio": round(ratio, 3),
        "host_cpu_s_1_device": round(cpu_single, 1),
        f"host_cpu_s_{args.devices}_devices": round(cpu_n, 1),
        "runs": [single, *parallel],
        "machine": {"cpus": os.cpu_count(), "loadavg_after": [round(x, 2) for x in load],
                    "python": platform.python_version(), "platform": platform.platform()},
        "note": "job delays are the fake service's (tests/fakes/aihub_server.py), not AI Hub's",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"1 device: {single['wall_s']:.1f} s ({jobs_single} jobs, {cpu_single:.0f} s host CPU); "
          f"{args.devices} devices at once: {wall_n:.1f} s ({cpu_n:.0f} s host CPU on {os.cpu_count()} cores, "
          f"load {load[0]:.1f})")
    print(f"ratio ({args.devices} at once / 1): {ratio:.2f}x  -> {args.out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
