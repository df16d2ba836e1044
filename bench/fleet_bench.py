"""Fleet benchmark: fleet wall time vs running the same cells one by one, and database
writes per second under 8 concurrent workers (SQLite and PostgreSQL).

Two kinds of cells:

* ``--cells simulated`` (default): 16 devices (8 AI Hub device files, 8 QNN-emulator device
  files) x 2 pipelines. Every cell is a real subprocess through the fleet's SubprocessRunner
  (process start, device lock, database writes, previous-night comparison, reports), but the
  cell itself is tests/fakes/fleet_cells.py: it SIMULATES the device's time with a fixed
  sleep (--device-time) and writes a run like a real cell. Numbers say what the fleet
  machinery does with concurrency; they are not model timings.
* ``--cells aihub``: real cells (``python -m edgegate.fleet.cell``: AIMET, compile, profile,
  inference, scoring) on N device files pointing at the fake AI Hub service
  (tests/fakes/aihub_server.py; its jobs take --job-delay seconds; its profile times are
  synthetic), x 2 pipelines. Heavy: each cell imports torch and AIMET; size it to the host.

Prints the numbers and merges them into bench/results/fleet_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fakes.db_writers import concurrent_writes  # noqa: E402

from edgegate.fleet.model import FleetOptions  # noqa: E402
from edgegate.fleet.run import run_fleet  # noqa: E402
from edgegate.fleet.executors import SubprocessRunner  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "fleet_bench.json"
PIPELINES = [ROOT / "tests/fixtures/pipelines/person_detect_mini_aihub.yaml", ROOT / "tests/fixtures/fleet/mini_cpu.yaml"]
# AI Hub's catalogue as it is today (the fake's default): the RB5-era Proxy devices are gone.
HUB_DEVICES = [("Dragonwing RB3 Gen 2 Vision Kit", "chipset:qualcomm-qcs6490", "v68"),
               ("Dragonwing IQ-9075 EVK", "chipset:qualcomm-qcs9075", "v73")]
TOKEN = "fleet-bench-token-5f0c"


def _devices(ddir: Path, hub: int, emulators: int) -> None:
    ddir.mkdir(parents=True)
    for i in range(hub):
        name, attr, arch = HUB_DEVICES[i % len(HUB_DEVICES)]
        (ddir / f"hub-{i:02d}.yaml").write_text(
            f"name: hub-{i:02d}\nkind: aihub\ntags: [bench, aihub]\narch: {arch}\ndevice: {name}\n"
            f"attributes: [{attr}]\npoll_interval_s: 0.05\njob_timeout_s: 600\n")
    for i in range(emulators):
        (ddir / f"emu-{i:02d}.yaml").write_text(
            f"name: emu-{i:02d}\nkind: qnn-emulator\ntags: [bench, emulator]\narch: v66\nhtp_arch: 68\n")


def _fleet(tmp: Path, concurrency: int, timeout_s: float) -> Path:
    path = tmp / "fleet.yaml"
    path.write_text(f"name: bench\npipelines: [{', '.join(str(p) for p in PIPELINES)}]\ndevices: ['tag:bench']\n"
                    f"devices_dir: devices\nconcurrency: {concurrency}\ntimeout_s: {timeout_s}\nevidence: never\n")
    return path


def _run(tmp: Path, label: str, concurrency: int, runner: SubprocessRunner, timeout_s: float,
         only: str | None = None) -> dict:
    work = tmp / label
    work.mkdir()
    shutil.copytree(tmp / "devices", work / "devices", ignore=None if only is None else
                    (lambda d, names: [n for n in names if n != f"{only}.yaml"]))
    result = run_fleet(_fleet(work, concurrency, timeout_s), FleetOptions(
        db_url=f"sqlite:///{work / 'eg.db'}", home=tmp / "home", runner=runner, out_dir=work / "out",
        concurrency=concurrency))
    counts = {k: v for k, v in result.counts().items() if v}
    print(f"  {label}: {len(result.cells)} cells, concurrency {concurrency}: {result.wall_s:.1f} s {counts}", flush=True)
    return {"cells": len(result.cells), "concurrency": concurrency, "wall_s": round(result.wall_s, 2), "counts": counts}


def bench_fleet(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="edgegate-fleet-bench-"))
    try:
        if args.cells == "simulated":
            _devices(tmp / "devices", 8, 8)
            runner = SubprocessRunner(command=(sys.executable, str(ROOT / "tests/fakes/fleet_cells.py")),
                                      env={"EDGEGATE_FAKE_CELL_SLEEP": str(args.device_time)})
            print(f"fleet: 16 devices x 2 pipelines, SIMULATED cells (subprocess + DB writes + "
                  f"{args.device_time:g} s sleep standing for the device's time)", flush=True)
            return _compare(tmp, runner, args, {"device_time_s": args.device_time, "devices": 16})
        from fakes.aihub_server import FakeAihub

        _devices(tmp / "devices", args.devices, 0)
        with FakeAihub(TOKEN) as fake:
            for kind in ("compile", "profile", "inference"):
                fake.behave(kind, delay_s=args.job_delay)
            runner = SubprocessRunner(env={"EDGEGATE_AIHUB_TOKEN": TOKEN, "EDGEGATE_AIHUB_API_URL": fake.url})
            print(f"fleet: {args.devices} fake-AI-Hub devices x 2 pipelines, REAL cells (AIMET, compile/profile/"
                  f"inference jobs of {args.job_delay:g} s on the fake service, scoring)", flush=True)
            # warm the artifact cache (AIMET per pipeline and config) on one device per kind,
            # so both timings below see the same work
            for dev in sorted({f"hub-{i:02d}" for i in range(min(args.devices, len(HUB_DEVICES)))}):
                _run(tmp, f"warm-up-{dev}", 1, runner, 1800, only=dev)
            return _compare(tmp, runner, args, {"job_delay_s": args.job_delay, "devices": args.devices,
                                                "jobs_submitted_incl_warm_up": len(fake.submissions)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _compare(tmp: Path, runner: SubprocessRunner, args: argparse.Namespace, extra: dict) -> dict:
    serial = _run(tmp, "one-by-one", 1, runner, 1800)
    fleet = _run(tmp, "fleet", args.concurrency, runner, 1800)
    out = {"cells": args.cells, **extra, "pipelines": 2, "one_by_one": serial, "fleet": fleet,
           "speedup": round(serial["wall_s"] / fleet["wall_s"], 2)}
    print(f"fleet wall time: {fleet['wall_s']:.1f} s at concurrency {args.concurrency} vs "
          f"{serial['wall_s']:.1f} s one by one ({out['speedup']:.2f}x)", flush=True)
    return out


def _writes(url: str, runs: int) -> dict:
    """concurrent_writes, then every row counted back: 'lost' is what the writers wrote and
    the database does not hold."""
    from sqlalchemy import create_engine, func, select

    from edgegate.db import LatencySampleRow, MetricRow, RunRow, engine_url

    r = concurrent_writes(url, 8, runs, 50)
    engine = create_engine(engine_url(url))
    with engine.connect() as conn:
        held = {k: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for k, t in (("runs", RunRow), ("metrics", MetricRow), ("latency_samples", LatencySampleRow))}
    engine.dispose()
    r["lost"] = sum(r[k] - held[k] for k in held)
    return r


def bench_db(args: argparse.Namespace) -> dict:
    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="edgegate-db-bench-"))
    try:
        out["sqlite"] = _writes(f"sqlite:///{tmp / 'eg.db'}", args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        import pytest

        from fakes.postgres import start_postgres

        server = start_postgres()
    except (ImportError, RuntimeError, pytest.skip.Exception) as exc:  # no server binaries: say so
        out["postgresql"] = {"skipped": str(exc)}
    else:
        try:
            out["postgresql"] = _writes(server.database("bench"), args.runs)
            out["postgresql"]["server"] = "throwaway test cluster (fsync=off, synchronous_commit=off): optimistic"
        finally:
            server.stop()
    for name, r in out.items():
        if "skipped" in r:
            print(f"db writes, {name}: skipped ({r['skipped']})")
            continue
        r.update({k: round(v, 1) for k, v in r.items() if isinstance(v, float)})
        print(f"db writes, {name}, 8 concurrent workers: {r['transactions_per_s']:.0f} transactions/s, "
              f"{r['rows_per_s']:.0f} rows/s ({r['runs']} runs, {r['latency_samples']} latency samples, "
              f"{r['lost']} lost, {r['wall_s']:.1f} s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", choices=["simulated", "aihub"], default="simulated")
    parser.add_argument("--device-time", type=float, default=3.0, help="simulated: seconds of device time per cell")
    parser.add_argument("--devices", type=int, default=16, help="aihub: how many fake AI Hub devices")
    parser.add_argument("--job-delay", type=float, default=2.0, help="aihub: seconds each fake AI Hub job takes")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=25, help="db: runs per writer")
    parser.add_argument("--skip-db", action="store_true")
    parser.add_argument("--skip-fleet", action="store_true")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    host = {"cpus": os.cpu_count(), "python": platform.python_version()}
    if not args.skip_fleet:
        load = list(os.getloadavg())
        results[f"fleet_{args.cells}"] = {**bench_fleet(args), "host": {**host, "loadavg_at_start": load}}
    if not args.skip_db:
        load = list(os.getloadavg())
        results["db_writes_8_workers"] = {**bench_db(args), "host": {**host, "loadavg_at_start": load}}
    results.pop("host", None)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
