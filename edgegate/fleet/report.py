"""Fleet reports: one JSON document per fleet run, rendered for a terminal, Markdown
(``$GITHUB_STEP_SUMMARY``, a PR comment), JUnit XML (CI shows failures natively) and one
self-contained HTML page with plots (PNG embedded as base64).

``build_fleet_report`` reads what the renderers need from the database once: each cell's
trend over the fleet's last N runs and the golden's and candidate's latency samples. The
JSON is the source of truth; the renderers only format it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

from edgegate import __version__
from edgegate.db import ExperimentDB
from edgegate.fleet.model import BAD, BROKEN, FAILING_GATE, CellResult, CellStatus, FleetResult
from edgegate.fleet.store import FleetStore
from edgegate.metrics import MetricKind, get_metric
from edgegate.report.run_report import write_json_report

FLEET_REPORT_SCHEMA = "https://edgegate.dev/fleet-report/v1"
LATENCY_METRIC = "inference_time_ms"
# Quality metric plotted when no gate names one, in order of preference.
QUALITY_PREFERENCE = ("map50", "accuracy", "macro_f1", "next_token_accuracy", "f1", "recall")
STATUS_MARK = {"passed": "PASS", "failed": "FAIL", "regressed": "REGR", "flaky": "FLAKY", "error": "ERROR",
               "timeout": "TIMEOUT"}
STATUS_EMOJI = {"passed": "✅", "failed": "❌", "regressed": "📉", "flaky": "⚠️", "error": "💥", "timeout": "⏱️"}
STATUS_COLOUR = {"passed": "#1a7f37", "failed": "#cf222e", "regressed": "#cf222e", "flaky": "#9a6700",
                 "error": "#8250df", "timeout": "#8250df"}


# ----------------------------------------------------------------------------- building


def _quality_metric(gates: Sequence[dict[str, Any]], metrics: dict[str, Any]) -> str | None:
    def is_quality(name: str) -> bool:
        try:
            return get_metric(name).kind is MetricKind.QUALITY and name != "baseline_agreement"
        except Exception:
            return False

    for g in gates:
        if g.get("metric") and is_quality(g["metric"]) and g["metric"] in metrics:
            return g["metric"]
    for name in QUALITY_PREFERENCE:
        if name in metrics:
            return name
    return next((n for n in metrics if is_quality(n)), None)


def _samples(db: ExperimentDB, run_id: int | None) -> dict[str, Any] | None:
    if run_id is None:
        return None
    run = db.get_run(run_id)
    samples = db.latency_samples(run_id)
    if run is None or not samples:
        return None
    source = db.metrics(run_id).get(LATENCY_METRIC)
    return {"run_id": run_id, "variant": run.variant, "source": source.source if source else None, "graphs": samples}


def _cell_report(cell: CellResult, fleet: str, nights: int, db: ExperimentDB, store: FleetStore) -> dict[str, Any]:
    d = cell.to_dict()
    final = cell.final
    cand_id = final.candidate_run_id if final else None
    base_id = final.baseline_run_id if final else None
    cand_metrics = db.metrics(cand_id) if cand_id is not None else {}
    quality = _quality_metric(final.gates if final else [], cand_metrics)
    if quality is None:  # an error tonight: take the metric from the history
        for h in reversed(store.history(fleet, cell.pipeline, cell.device, nights)):
            if h.candidate_run_id is not None:
                quality = _quality_metric([], db.metrics(h.candidate_run_id))
                break
    trend = []
    for h in store.history(fleet, cell.pipeline, cell.device, nights):
        m = db.metrics(h.candidate_run_id) if h.candidate_run_id is not None else {}
        lat, q = m.get(LATENCY_METRIC), m.get(quality) if quality else None
        trend.append({
            "fleet_run_id": h.fleet_run_id, "started_at": h.started_at.isoformat(timespec="seconds"),
            "status": h.status, "run_id": h.candidate_run_id,
            "latency_ms": lat.value if lat else None, "latency_source": lat.source if lat else None,
            "quality": q.value if q else None,
        })
    d.update({
        "candidate_run_id": cand_id, "baseline_run_id": base_id,
        "gates": final.gates if final else [],
        "vs_previous": final.vs_previous if final else None,
        "trend_metrics": {"latency": LATENCY_METRIC, "quality": quality},
        "trend": trend,
        "latency_samples": {"baseline": _samples(db, base_id), "candidate": _samples(db, cand_id)},
    })
    return d


def build_fleet_report(result: FleetResult, db: ExperimentDB) -> dict[str, Any]:
    store = FleetStore(db)
    return {
        "schema": FLEET_REPORT_SCHEMA,
        "edgegate": __version__,
        "fleet": result.name,
        "fleet_run_id": result.fleet_run_id,
        "spec_path": result.spec_path,
        "executor": result.executor,
        "database": _redact(result.db_url),
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "wall_s": result.wall_s,
        "exit_code": result.exit_code,
        "counts": result.counts(),
        "history_nights": result.history,
        "notes": result.notes,
        "cells": [_cell_report(c, result.name, result.history, db, store) for c in result.cells],
    }


def _redact(url: str) -> str:
    """A database URL without its password (reports are uploaded as CI artifacts)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


# ----------------------------------------------------------------------------- text renderers


def _verdict_line(report: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in report["counts"].items() if n)
    verdict = {0: "PASS", 1: "FAIL (confirmed regression or newly failing gates)", 3: "ERROR (cells did not finish)"}
    return f"Fleet verdict: {verdict.get(report['exit_code'], report['exit_code'])} — {counts or 'no cells'}"


def _fmt(v: Any, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}g}"


def render_fleet_terminal(report: dict[str, Any], *, width: int = 140) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"EdgeGate fleet · {report['fleet']} · run {report['fleet_run_id']} · {report['executor']} "
                        f"· {report['wall_s']:.1f} s", title_justify="left")
    for col, kw in (("Cell", {}), ("Status", {}), ("Runs", {"justify": "right"}),
                    ("Latency (ms)", {"justify": "right"}), ("Quality", {"justify": "right"}), ("Why", {})):
        table.add_column(col, **kw)
    for c in report["cells"]:
        last = c["trend"][-1] if c["trend"] and c["trend"][-1]["run_id"] == c["candidate_run_id"] else None
        q = c["trend_metrics"]["quality"]
        runs = ",".join(str(a["candidate_run_id"]) for a in c["attempts"] if a.get("candidate_run_id")) or "—"
        table.add_row(
            c["cell"], STATUS_MARK[c["status"]], runs,
            _fmt(last["latency_ms"]) if last else "—",
            f"{q} {_fmt(last['quality'])}" if last and q else "—",
            c["reason"],
        )
    with open(os.devnull, "w") as devnull:
        console = Console(width=width, record=True, color_system=None, force_terminal=False, file=devnull)
        console.print(table)
    lines = [console.export_text().rstrip(), "", _verdict_line(report)]
    lines += [f"Note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def render_fleet_markdown(report: dict[str, Any]) -> str:
    out = [
        f"## EdgeGate fleet: {report['fleet']} (run {report['fleet_run_id']})",
        "",
        f"**{_verdict_line(report)}** · executor {report['executor']} · {report['wall_s']:.0f} s",
        "",
        "| Cell | Status | Candidate run | Latency (ms) | Quality | vs previous night | Why |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for c in report["cells"]:
        last = c["trend"][-1] if c["trend"] and c["trend"][-1]["run_id"] == c["candidate_run_id"] else None
        q = c["trend_metrics"]["quality"]
        vp = c.get("vs_previous") or {}
        prev = f"{vp.get('verdict')} (run {vp['previous_run_id']})" if vp.get("previous_run_id") else "—"
        out.append(
            f"| `{c['cell']}` | {STATUS_EMOJI[c['status']]} {c['status']} | {c['candidate_run_id'] or '—'} | "
            f"{_fmt(last['latency_ms']) if last else '—'} | {(q + ' ' + _fmt(last['quality'])) if last and q else '—'} | "
            f"{prev} | {c['reason'].replace('|', '/')} |"
        )
    failing = [c for c in report["cells"] if c["status"] in BAD]
    for c in failing:
        out += ["", f"<details><summary>{c['cell']}: {c['status']}</summary>", ""]
        for g in c["gates"]:
            out.append(f"- gate `{g['expr']}`: {g['status']}" + (f" — {g['reason']}" if g.get("reason") else ""))
        for name, m in ((c.get("vs_previous") or {}).get("metrics") or {}).items():
            if m["status"] == "regressed":
                out.append(f"- {name}: {_fmt(m['baseline'])} → {_fmt(m['candidate'])} (previous night → tonight)")
        out += ["", "</details>"]
    out += [f"> {n}" for n in report["notes"]]
    return "\n".join(out) + "\n"


def render_fleet_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=1, default=str)


# ----------------------------------------------------------------------------- JUnit XML


def render_junit(report: dict[str, Any]) -> str:
    """One testsuite per fleet run; a testcase per cell and one per gate of the cell's final run."""
    suite = ET.Element("testsuite", name=f"edgegate fleet {report['fleet']}", timestamp=report["started_at"],
                       time=f"{report['wall_s']:.3f}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def case(classname: str, name: str, seconds: float = 0.0) -> ET.Element:
        counts["tests"] += 1
        return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")

    for c in report["cells"]:
        classname = f"{report['fleet']}.{c['pipeline']}"
        tc = case(classname, c["device"], c.get("wall_s") or 0.0)
        if c["status"] in BAD:
            counts["failures"] += 1
            ET.SubElement(tc, "failure", message=c["reason"], type=c["status"]).text = _failure_text(c)
        elif c["status"] in BROKEN:
            counts["errors"] += 1
            ET.SubElement(tc, "error", message=c["reason"], type=c["status"]).text = c["reason"]
        elif c["status"] == CellStatus.FLAKY:
            ET.SubElement(tc, "system-out").text = f"flaky: {c['reason']}"
        for g in c["gates"]:
            gc = case(classname, f"{c['device']} gate: {g['expr']}")
            if g["status"] in FAILING_GATE:
                counts["failures"] += 1
                ET.SubElement(gc, "failure", message=g.get("reason") or g["status"], type="gate")
            elif g["status"] == "n/a":
                counts["skipped"] += 1
                ET.SubElement(gc, "skipped", message=g.get("reason") or "not applicable")
    for k, v in counts.items():
        suite.set(k, str(v))
    suites = ET.Element("testsuites", name="edgegate", tests=str(counts["tests"]),
                        failures=str(counts["failures"]), errors=str(counts["errors"]))
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _failure_text(c: dict[str, Any]) -> str:
    lines = [c["reason"]]
    for a in c["attempts"]:
        lines.append(f"attempt {a['attempt']}: run {a.get('candidate_run_id')}, {a.get('signal') or 'clean'}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- HTML


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _trend_plot(cell: dict[str, Any]) -> str | None:
    import matplotlib.pyplot as plt

    points = [p for p in cell["trend"] if p["latency_ms"] is not None or p["quality"] is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 2.6))
    x = list(range(len(points)))
    labels = [f"#{p['fleet_run_id']}" for p in points]
    nan = float("nan")
    lat = [nan if p["latency_ms"] is None else p["latency_ms"] for p in points]
    ax.plot(x, lat, "o-", color="#0969da", label=LATENCY_METRIC)
    for xi, p in zip(x, points):
        if p["status"] in (*BAD, CellStatus.FLAKY):
            ax.plot([xi], [lat[xi]], "o", ms=10, mfc="none", mec=STATUS_COLOUR[p["status"]])
    src = next((p["latency_source"] for p in reversed(points) if p["latency_source"]), "")
    ax.set_ylabel(f"latency ms ({src})", color="#0969da")
    ax.set_xticks(x, labels, fontsize=7, rotation=45 if len(x) > 8 else 0)
    ax.set_xlabel("fleet run (night)")
    q = cell["trend_metrics"]["quality"]
    if q:
        ax2 = ax.twinx()
        ax2.plot(x, [nan if p["quality"] is None else p["quality"] for p in points], "s--", color="#1a7f37", label=q)
        ax2.set_ylabel(q, color="#1a7f37")
    ax.set_title(f"{cell['cell']}: last {len(points)} nights", fontsize=9)
    return _png(fig)


def _distribution_plot(cell: dict[str, Any]) -> str | None:
    import matplotlib.pyplot as plt

    base, cand = cell["latency_samples"]["baseline"], cell["latency_samples"]["candidate"]
    if not cand:
        return None
    graphs = list(cand["graphs"])
    fig, ax = plt.subplots(figsize=(5.2, 2.6))
    data, positions, colours = [], [], []
    for i, g in enumerate(graphs):
        for side, offset, colour in ((base, -0.2, "#8c959f"), (cand, 0.2, "#0969da")):
            if side and g in side["graphs"]:
                data.append(side["graphs"][g])
                positions.append(i + offset)
                colours.append(colour)
    parts = ax.boxplot(data, positions=positions, widths=0.35, patch_artist=True, showfliers=True,
                       medianprops={"color": "#1f2328"}, flierprops={"markersize": 3})
    for patch, colour in zip(parts["boxes"], colours):
        patch.set_facecolor(colour)
        patch.set_alpha(0.7)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#8c959f", label="baseline (golden)"), Patch(color="#0969da", label="candidate")],
              fontsize=7, loc="best")
    ax.set_xticks(range(len(graphs)), graphs, fontsize=8)
    ax.set_ylabel("latency per call (ms)")
    bsrc = f"baseline run {base['run_id']} ({base['source']})" if base else "no baseline samples"
    ax.set_title(f"{bsrc} vs candidate run {cand['run_id']} ({cand['source']})", fontsize=8)
    if base and base["source"] != cand["source"]:
        ax.text(0.01, 0.97, "sources differ: not a speedup", transform=ax.transAxes, va="top", fontsize=7,
                color="#cf222e")
    return _png(fig)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#1f2328}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #d0d7de;padding:4px 8px;font-size:13px}
th{background:#f6f8fa}.status{font-weight:bold;color:#fff;padding:2px 6px;border-radius:4px}
.cell{border:1px solid #d0d7de;border-radius:6px;padding:0.8em;margin:1em 0}.plots img{margin-right:8px}
.muted{color:#656d76;font-size:12px}
"""


def render_fleet_html(report: dict[str, Any]) -> str:
    """One self-contained page: the summary table, then each cell's plots and gates."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        plotting = True
    except ImportError:  # the page without plots beats no page after a night of runs
        plotting = False
    e = html.escape

    def badge(status: str) -> str:
        return f'<span class="status" style="background:{STATUS_COLOUR[status]}">{e(status)}</span>'

    rows = "".join(
        f"<tr><td><a href='#{e(c['cell'])}'>{e(c['cell'])}</a></td><td>{badge(c['status'])}</td>"
        f"<td>{c['candidate_run_id'] or '—'}</td><td>{len(c['attempts'])}</td><td>{e(c['reason'])}</td></tr>"
        for c in report["cells"]
    )
    sections = []
    for c in report["cells"]:
        imgs = [(_trend_plot(c), "trend"), (_distribution_plot(c), "latency distributions")] if plotting else []
        plots = "".join(f'<img alt="{e(c["cell"])} {alt}" src="{src}">' for src, alt in imgs if src)
        gates = "".join(
            f"<tr><td><code>{e(g['expr'])}</code></td><td>{e(g['status'])}</td><td>{e(g.get('reason') or '')}</td></tr>"
            for g in c["gates"]
        )
        vp = c.get("vs_previous") or {}
        regress = "".join(
            f"<tr><td>{e(n)}</td><td>{_fmt(m['baseline'])}</td><td>{_fmt(m['candidate'])}</td><td>{e(m['status'])}"
            f"{'' if m.get('significant') is not False else ' (~ not significant)'}</td></tr>"
            for n, m in (vp.get("metrics") or {}).items() if m["status"] in ("regressed", "improved")
        )
        sections.append(
            f"<div class='cell' id='{e(c['cell'])}'><h3>{e(c['cell'])} {badge(c['status'])}</h3>"
            f"<p>{e(c['reason'])}</p><p class='muted'>attempts: "
            + ", ".join(f"#{a['attempt']} {e(a['status'])} run {a.get('candidate_run_id') or '—'} "
                        f"({a.get('wall_s', 0):.1f} s){' — ' + e(a['signal']) if a.get('signal') else ''}"
                        for a in c["attempts"])
            + f"; worker {e(c.get('worker') or '—')}</p>"
            + (f"<div class='plots'>{plots}</div>" if plots else "<p class='muted'>no measurements to plot</p>")
            + (f"<table><tr><th>Gate</th><th>Status</th><th>Reason</th></tr>{gates}</table>" if gates else "")
            + (f"<p>vs previous night (run {vp.get('previous_run_id')}):</p><table><tr><th>Metric</th>"
               f"<th>Previous</th><th>Tonight</th><th>Status</th></tr>{regress}</table>" if regress else "")
            + "</div>"
        )
    notes = "".join(f"<li>{e(n)}</li>" for n in report["notes"])
    if not plotting:
        notes += "<li>no plots: matplotlib is not installed (pip install 'edgegate[fleet]')</li>"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>EdgeGate fleet {e(report['fleet'])} run {report['fleet_run_id']}</title><style>{_CSS}</style></head><body>"
        f"<h1>EdgeGate fleet: {e(report['fleet'])} <small class='muted'>run {report['fleet_run_id']}</small></h1>"
        f"<p><b>{e(_verdict_line(report))}</b></p><p class='muted'>{e(report['started_at'])} → "
        f"{e(report['finished_at'])} · {report['wall_s']:.1f} s · executor {e(report['executor'])} · "
        f"database {e(report['database'])} · EdgeGate {e(report['edgegate'])}</p>"
        f"<table><tr><th>Cell</th><th>Status</th><th>Candidate run</th><th>Attempts</th><th>Why</th></tr>{rows}</table>"
        + (f"<ul>{notes}</ul>" if notes else "")
        + "".join(sections)
        + "</body></html>\n"
    )


def write_fleet_reports(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """fleet.json, fleet.md, fleet.html, junit.xml and summary.txt in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "fleet.json", "markdown": out_dir / "fleet.md", "html": out_dir / "fleet.html",
             "junit": out_dir / "junit.xml", "text": out_dir / "summary.txt"}
    write_json_report(report, paths["json"])
    paths["markdown"].write_text(render_fleet_markdown(report))
    paths["junit"].write_text(render_junit(report))
    paths["text"].write_text(render_fleet_terminal(report) + "\n")
    paths["html"].write_text(render_fleet_html(report))
    return paths
