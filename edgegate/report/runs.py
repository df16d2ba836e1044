"""Views of stored runs for people: a pandas frame of runs, and one run in detail."""

from __future__ import annotations

from typing import Any

import pandas as pd

from edgegate.db import ExperimentDB
from edgegate.errors import InputError
from edgegate.stats import summarize_latency

RUN_COLUMNS = ["id", "pipeline", "device", "variant", "status", "started_at", "ended_at", "pack_digest", "golden_run_id", "error"]


def runs_frame(db: ExperimentDB, *, pipeline: str | None = None, device: str | None = None, limit: int = 20) -> pd.DataFrame:
    """Runs newest first, one row each, with the headline metrics as columns."""
    rows = []
    for r in db.list_runs(pipeline, device, limit):
        row: dict[str, Any] = {c: getattr(r, c) for c in RUN_COLUMNS}
        row["pack_digest"] = (r.pack_digest or "")[:19]
        metrics = db.metrics(r.id)
        for name in ("inference_time_ms", "peak_memory_mb", "map50", "accuracy"):
            if name in metrics:
                row[name] = round(metrics[name].value, 4)
                if name in ("inference_time_ms", "peak_memory_mb"):
                    row["timing_source"] = metrics[name].source
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else RUN_COLUMNS)
    return frame


def run_details(db: ExperimentDB, run_id: int) -> dict[str, Any]:
    run = db.get_run(run_id)
    if run is None:
        raise InputError(f"runs show: no run with id {run_id} in {db.url}")
    latency = {g: summarize_latency(s).to_dict() for g, s in db.latency_samples(run_id).items() if s}
    return {
        "run": {k: getattr(run, k) for k in (*RUN_COLUMNS, "model_digest", "config_digest", "report_path")},
        "details": run.details,
        "metrics": {k: {"value": m.value, "unit": m.unit, "source": m.source} for k, m in db.metrics(run_id).items()},
        "latency": latency,
        "artifacts": db.artifacts(run_id),
        "golden": db.golden(run.pipeline, run.device) == run_id,
    }


def render_run(d: dict[str, Any]) -> str:
    r = d["run"]
    lines = [
        f"run {r['id']}: {r['pipeline']} on {r['device']} ({r['variant']}) {r['status']}"
        + (" [golden]" if d["golden"] else ""),
        f"  started {r['started_at']}, ended {r['ended_at'] or '-'}",
        f"  model {r['model_digest'] or '-'}",
        f"  pack  {r['pack_digest'] or '-'}",
        f"  config {r['config_digest'] or '-'}",
    ]
    if r["error"]:
        lines.append(f"  error: {r['error']}")
    if d["metrics"]:
        lines.append("metrics:")
        frame = pd.DataFrame(
            [{"metric": k, "value": round(v["value"], 6), "unit": v["unit"] or "", "source": v["source"]}
             for k, v in d["metrics"].items()]
        )
        lines += ["  " + ln for ln in frame.to_string(index=False).splitlines()]
    if d["latency"]:
        lines.append("latency per graph (ms):")
        frame = pd.DataFrame([{"graph": g, **{k: round(v, 3) for k, v in s.items()}} for g, s in d["latency"].items()])
        lines += ["  " + ln for ln in frame.to_string(index=False).splitlines()]
    if d["artifacts"]:
        lines.append("artifacts:")
        lines += [f"  {a['kind']:<18} {a['graph'] or '':<6} {a['sha256'][:16]}  {a['path']}" for a in d["artifacts"]]
    return "\n".join(lines)
