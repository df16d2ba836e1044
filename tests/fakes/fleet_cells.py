"""Stand-ins for a fleet cell: fast, deterministic, and writing the database as a real cell does.

``ScriptedRunner`` is a CellRunner (``runner(task, attempt)``): for each cell it stores a
golden FP32 run once, then an INT8 candidate run with metrics and latency samples drawn
from a seeded generator. ``plan`` says how each (cell, attempt) behaves tonight:
``"ok"`` (default), ``"slow"`` (latency x1.5), ``"bad"`` (map50 falls below its gate),
``"error"`` (the attempt fails), ``"boom"`` (the runner raises). ``sleep_s`` stands in for
the device time of a run (benchmarks). ``record`` appends (device, start, end) of every
attempt to a file, to check that no board ever ran two cells at once.

Run as a script it is a stand-in for ``python -m edgegate.fleet.cell`` (same arguments):
a pipeline file whose name contains ``hang`` starts a child ``sleep`` (pid written next to
the result) and sleeps; ``crash`` exits without a result; anything else sleeps
$EDGEGATE_FAKE_CELL_SLEEP seconds (a device's time, simulated) and writes an ok run.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GRAPHS = ("pnet", "rnet", "onet")
PACK = "sha256:" + "0" * 64
GATE = "map50 >= 0.8"


def _seed(*parts: Any) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


def write_fake_run(db_url: str, pipeline: str, device: str, behaviour: str, seed: int, samples: int = 40) -> dict[str, Any]:
    """Golden (once) + candidate rows as a real cell leaves them; the fleet_cell result dict."""
    from edgegate.db import ExperimentDB

    db = ExperimentDB(db_url)
    rng = np.random.default_rng(seed)
    golden = db.golden(pipeline, device)
    if golden is None:
        golden = _store(db, pipeline, device, "fp32", rng, 1.2, 0.92, samples)
        db.finish_run(golden, "completed")
        db.set_golden(pipeline, device, golden)
    factor = 1.5 if behaviour == "slow" else 1.0
    quality = 0.6 if behaviour == "bad" else 0.9
    cand = _store(db, pipeline, device, "int8", rng, factor, quality, samples, golden)
    passed = quality >= 0.8
    db.finish_run(cand, "passed" if passed else "failed")
    gates = [{"expr": GATE, "metric": "map50", "status": "pass" if passed else "fail", "value": quality,
              "limit": 0.8, "reason": f"{quality} >= 0.8 {'holds' if passed else 'does not hold'}"},
             {"expr": "inference_time_ms <= 100", "metric": "inference_time_ms", "status": "n/a", "value": None,
              "limit": None, "reason": "host-cpu timing"}]
    return {"status": "completed", "passed": passed, "baseline_run_id": golden, "candidate_run_id": cand,
            "gates": gates}


def _store(db: Any, pipeline: str, device: str, variant: str, rng: Any, factor: float, quality: float,
           samples: int, golden: int | None = None) -> int:
    from edgegate.db import StoredMetric

    rid = db.start_run(invocation="fake", pipeline=pipeline, device=device, variant=variant,
                       model_digest="sha256:m", pack_digest=PACK, config_digest="sha256:c", golden_run_id=golden)
    medians = []
    for i, g in enumerate(GRAPHS):
        values = (2.0 + i) * factor * (1 + 0.02 * rng.standard_normal(samples))
        db.add_latency_samples(rid, g, values.tolist(), "host-cpu")
        medians.append(float(np.median(values)))
    db.add_metrics(rid, [
        StoredMetric("inference_time_ms", sum(medians), "ms", "host-cpu"),
        StoredMetric("latency_min_ms", sum(medians) * 0.9, "ms", "host-cpu"),
        StoredMetric("map50", quality, "ratio", "computed"),
        StoredMetric("accuracy", quality, "ratio", "computed"),
    ])
    return rid


def _append_interval(path: str, device: str, start: float, end: float) -> None:
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        f.write(json.dumps([device, start, end]) + "\n")


@dataclass
class ScriptedRunner:
    """A CellRunner writing fake runs; see the module docstring."""

    night: int = 1
    plan: dict[str, dict[int, str]] = field(default_factory=dict)  # cell id -> attempt -> behaviour
    sleep_s: float = 0.0
    record: str | None = None

    def __call__(self, task: Any, attempt: int) -> Any:
        from edgegate.fleet.model import AttemptResult

        behaviour = self.plan.get(task.cell_id, {}).get(attempt, "ok")
        start = time.time()
        if self.sleep_s:
            time.sleep(self.sleep_s)
        try:
            if behaviour == "boom":
                raise RuntimeError("runner blew up")
            if behaviour == "error":
                return AttemptResult(attempt, "error", error="target failed: device offline")
            data = write_fake_run(task.db_url, task.pipeline, task.device, behaviour,
                                  _seed(task.cell_id, self.night, attempt))
            return AttemptResult.from_dict({**data, "attempt": attempt})
        finally:
            if self.record:
                _append_interval(self.record, task.device, start, time.time())


def _stub_main(argv: list[str]) -> int:
    args = dict(zip(argv[::2], argv[1::2]))
    pipeline, result = args["--pipeline"], Path(args["--result"])
    if "hang" in Path(pipeline).name:
        import subprocess

        child = subprocess.Popen(["sleep", "600"])
        (result.parent / "hang-child.pid").write_text(str(child.pid))
        time.sleep(600)
        return 0
    if "crash" in Path(pipeline).name:
        os._exit(70)
    time.sleep(float(os.environ.get("EDGEGATE_FAKE_CELL_SLEEP", "0")))  # the device's time, simulated
    import re

    name = re.search(r"^name:\s*(\S+)", Path(pipeline).read_text(), re.M).group(1)  # cheaper than load_pipeline
    data = write_fake_run(args["--db"], name, Path(args["--device"]).stem, "ok", _seed(pipeline, args["--device"], time.time()))
    result.write_text(json.dumps(data))
    return 0


if __name__ == "__main__":
    sys.exit(_stub_main(sys.argv[1:]))
