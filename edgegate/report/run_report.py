"""Reports: one JSON document per run, rendered as a terminal table (and Markdown).

The JSON is the source of truth; the renderers only format it. Every timing row carries
its source, and a comparison between different sources is printed as such, never as a
speedup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgegate import __version__
from edgegate.artifacts import atomic_write
from edgegate.metrics import Measurement, get_metric
from edgegate.results import PipelineResult, VariantResult
from edgegate.toolchain import toolchain_drift

REPORT_SCHEMA = "https://edgegate.dev/report/v1"

# Rows of the delta table, in order: (metric, label)
ROWS: tuple[tuple[str, str], ...] = (
    ("inference_time_ms", "Latency (cascade, median)"),
    ("latency_min_ms", "Latency (cascade, min)"),
    ("load_time_ms", "Load time"),
    ("peak_memory_mb", "Peak memory (inference)"),
    ("load_peak_memory_mb", "Peak memory (load)"),
    ("model_size_kb", "Model size (weights)"),
    ("compiled_size_kb", "Compiled artifact size"),
    ("map50", "mAP@0.5"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("accuracy", "Accuracy"),
    ("macro_f1", "Macro F1"),
    ("cosine_agreement", "Cosine agreement with FP32"),
    ("loss", "Loss"),
    ("perplexity", "Perplexity"),
    ("next_token_accuracy", "Next-token accuracy"),
    ("reproducible", "Reproducible"),
    ("adversarial_disagreement_rate", "Adversarial disagreement"),
    ("baseline_agreement", "Agreement with FP32"),
    ("npu_fraction", "NPU placement"),
)


def _m(m: Measurement | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"value": m.value, "unit": m.unit, "source": m.source.value}


def _variant(v: VariantResult) -> dict[str, Any]:
    return {
        "run_id": v.run_id,
        "variant": v.variant.value,
        "from_golden": v.from_golden,
        "target": v.target,
        "toolchain": v.toolchain,
        "metrics": {k: _m(m) for k, m in v.metrics.items()},
        "latency": {g: s.to_dict() for g, s in v.latency.items()},
        "placement": {
            g: {"npu_nodes": c.npu_nodes, "cpu_nodes": c.cpu_nodes, "cpu_ops": list(c.cpu_ops),
                "cached": c.details.get("cached", False)}
            for g, c in v.compiled.items()
        },
        "calls_per_image": v.calls_per_image,
        "memory_method": v.memory_method,
        "artifacts": v.artifacts,
        "reused": v.reused,
    }


def _delta(name: str, base: Measurement | None, cand: Measurement | None) -> dict[str, Any]:
    row: dict[str, Any] = {"metric": name}
    if base is None or cand is None:
        row["status"] = "missing"
        return row
    row["delta"] = cand.value - base.value
    row["relative"] = (cand.value - base.value) / base.value if base.value else None
    if base.source != cand.source:
        row["comparable"] = False
        row["note"] = f"sources differ: {base.source.value} vs {cand.source.value}"
    else:
        row["comparable"] = True
    return row


def _ratio(base: Measurement | None, cand: Measurement | None) -> dict[str, Any]:
    if base is None or cand is None or not cand.value:
        return {"value": None, "note": "not measured"}
    if base.source != cand.source:
        return {"value": None, "note": f"n/a: {base.source.value} vs {cand.source.value} timings"}
    return {"value": base.value / cand.value, "source": cand.source.value}


def build_report(result: PipelineResult) -> dict[str, Any]:
    b, c = result.baseline, result.candidate
    names = list(dict.fromkeys([*b.metrics, *c.metrics]))
    return {
        "schema": REPORT_SCHEMA,
        "edgegate": __version__,
        "pipeline": result.pipeline,
        "device": result.device,
        "promptpack": result.pack,
        "config_digest": result.config_digest,
        "golden_run_id": result.golden_run_id,
        "baseline": _variant(b),
        "candidate": _variant(c),
        "comparison": [_delta(n, b.metrics.get(n), c.metrics.get(n)) for n in names],
        "gates": [
            {"expr": g.gate.expr, "metric": g.gate.metric, "status": g.status.value, "value": g.value,
             "limit": g.limit, "source": g.source.value if g.source else None, "reason": g.reason}
            for g in result.gates
        ],
        "verdict": {
            "passed": result.passed,
            "speedup": _ratio(b.metrics.get("inference_time_ms"), c.metrics.get("inference_time_ms")),
            "memory_reduction": _ratio(b.metrics.get("peak_memory_mb"), c.metrics.get("peak_memory_mb")),
            "size_reduction": _ratio(b.metrics.get("model_size_kb"), c.metrics.get("model_size_kb")),
        },
        "notes": list(result.notes),
        "reproducibility": result.reproducibility,
        "adversarial": result.adversarial,
    }


def write_json_report(report: dict[str, Any], path: Path) -> None:
    """Write atomically: an existing report is never left half-written."""
    atomic_write(path, json.dumps(report, indent=1, sort_keys=False, default=str) + "\n")


def _fmt_value(name: str, m: dict[str, Any] | None) -> str:
    if m is None:
        return "—"
    v = m["value"]
    unit = m.get("unit") or ""
    if name == "npu_fraction":
        return f"{v * 100:.0f}%"
    if unit == "bool":
        return "yes" if v else "no"
    if unit == "ratio":
        return f"{v:.3f}"
    if unit in ("ms", "MB", "KB"):
        return f"{v:,.2f} {unit}" if v < 100 else f"{v:,.1f} {unit}"
    return f"{v:g} {unit}".strip()


def _fmt_delta(name: str, row: dict[str, Any] | None, m: dict[str, Any] | None) -> str:
    if row is None or "delta" not in row or m is None:
        return "—"
    if not row.get("comparable", True):
        return "n/a (sources differ)"
    d = row["delta"]
    unit = m.get("unit") or ""
    if name == "npu_fraction":
        text = f"{d * 100:+.0f} pp"
    elif unit == "ratio":
        text = f"{d:+.3f}"
    else:
        text = f"{d:+,.2f} {unit}".strip()
        if row.get("relative") is not None:
            text += f" ({row['relative'] * 100:+.0f}%)"
    return text


def _source(b: dict[str, Any] | None, c: dict[str, Any] | None) -> str:
    sb = b["source"] if b else None
    sc = c["source"] if c else None
    if sb == sc or sb is None or sc is None:
        return sb or sc or ""
    return f"{sb or '—'} → {sc or '—'}"


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    bm = report["baseline"]["metrics"]
    cm = report["candidate"]["metrics"]
    deltas = {r["metric"]: r for r in report["comparison"]}
    rows = []
    for name, label in ROWS:
        if name not in bm and name not in cm:
            continue
        rows.append(
            (label, _fmt_value(name, bm.get(name)), _fmt_value(name, cm.get(name)),
             _fmt_delta(name, deltas.get(name), cm.get(name) or bm.get(name)), _source(bm.get(name), cm.get(name)))
        )
    return rows


def _verdict_lines(report: dict[str, Any]) -> list[str]:
    v = report["verdict"]
    out = [f"Final Verdict: {'PASS' if v['passed'] else 'FAIL'}"]
    for key, label in (("speedup", "Speedup"), ("memory_reduction", "Memory reduction"), ("size_reduction", "Size reduction")):
        r = v[key]
        out.append(f"  {label}: " + (f"{r['value']:.2f}x ({r.get('source')})" if r["value"] is not None else r["note"]))
    return out


def reused_lines(report: dict[str, Any]) -> list[str]:
    """One phrase per result the run took from the cache, naming the run that computed it."""
    out = []
    for role in ("baseline", "candidate"):
        v = report[role]
        for what, by in (v.get("reused") or {}).items():
            out.append(f"{v['variant'].upper()} {what} from run {by['run_id']} ({by['at']})")
    for section, what in (("reproducibility", "reproducibility check"), ("adversarial", "adversarial search")):
        by = (report.get(section) or {}).get("reused_from")
        if by:
            out.append(f"{what} from run {by['run_id']} ({by['at']})")
    return out


def render_terminal(report: dict[str, Any], *, width: int = 120) -> str:
    """The delta table, gate lines and verdict as text (rich formatting, no colour codes)."""
    from rich.console import Console
    from rich.table import Table

    b, c = report["baseline"], report["candidate"]
    title = (
        f"EdgeGate · {report['pipeline']} on {report['device']['name']} "
        f"({report['device']['kind']}) · PromptPack {report['promptpack']['name']} "
        f"{report['promptpack']['version']} ({report['promptpack']['samples']} samples)"
    )
    golden = ", golden" if b["from_golden"] else ""
    title += f"\nBaseline: run {b['run_id']}{golden} on {b['target'].get('name', '?')}; candidate: run {c['run_id']}"
    table = Table(title=title, title_justify="left")
    table.add_column("Metric")
    table.add_column("Baseline (FP32)", justify="right")
    table.add_column("Optimized (INT8)", justify="right")
    table.add_column("Delta", justify="right")
    table.add_column("Source")
    for row in table_rows(report):
        table.add_row(*row)
    with open(os.devnull, "w") as devnull:
        console = Console(width=width, record=True, color_system=None, force_terminal=False, file=devnull)
        console.print(table)
    lines = [console.export_text().rstrip()]
    placement = c["placement"]
    if placement:
        parts = [f"{g}: {p['npu_nodes']}/{p['npu_nodes'] + p['cpu_nodes']} nodes on NPU" for g, p in placement.items()]
        lines.append("NPU placement: " + "; ".join(parts))
    if c["target"].get("timing_source") == "host-emulator":
        lines.append(
            "Note: host-emulator timings are the QNN HTP emulator running on this host's CPU, "
            "not device latency."
        )
    drift = toolchain_drift(b.get("toolchain"), c.get("toolchain"))
    if drift:
        lines.append("Toolchain differs: " + ", ".join(f"{k} {x} (baseline) vs {y} (candidate)" for k, (x, y) in drift.items()))
    lines.append("")
    lines.append("Gates:")
    for g in report["gates"]:
        mark = {"pass": "PASS", "fail": "FAIL", "n/a": "N/A ", "missing": "MISS"}[g["status"]]
        val = "" if g["value"] is None else f" (value {g['value']:.4g}" + (f", limit {g['limit']:.4g})" if g["limit"] is not None else ")")
        lines.append(f"  [{mark}] {g['expr']}{val}" + (f": {g['reason']}" if g["reason"] else ""))
    if not report["gates"]:
        lines.append("  (none declared)")
    repro = report.get("reproducibility")
    if repro:
        n = sum(1 for r in repro["checked"] if r["equal"])
        k = repro.get("fresh_processes", 2)  # reports before the double run compared two
        fresh = f"this run and {k} fresh process{'es' if k > 1 else ''}"
        if repro["reproducible"] is None:  # compiled bytes not judged (run.checks.repro_plan)
            lines.append(f"Reproducibility: n/a: {repro['not_applicable']} (quantization byte-identical: "
                         f"{n} artifact comparisons across {fresh})")
        elif repro["reproducible"]:
            lines.append(f"Reproducibility: byte-identical ({n} artifact comparisons across {fresh})"
                         + (f"; {repro['note']}" if repro.get("note") else ""))
        else:
            lines.append(f"Reproducibility: NOT reproducible: {repro['first_difference']}")
    adv = report.get("adversarial")
    if adv:
        modes = ", ".join(f"{k}: {v}" for k, v in sorted(adv["failure_modes"].items())) or "none"
        lines.append(
            f"Adversarial search ({adv['seeds_tried']} seeds, {adv['inputs_tried']} inputs, INT8 on "
            f"{adv['int8_runtime']}): disagreement {adv['disagreement_rate']:.1%}, neuron coverage "
            f"{adv['coverage']:.1%}, robustness FP32 {adv['fp32_robustness']:.1%} / INT8 {adv['int8_robustness']:.1%}; "
            f"failure modes: {modes}" + (f"; cases in {adv['findings_pack']}" if adv.get("findings_pack") else "")
        )
    reused = reused_lines(report)
    if reused:
        lines.append("Reused (deterministic host results; --no-cache computes them again): " + "; ".join(reused))
    lines.extend(["", *_verdict_lines(report)])
    for n in report.get("notes", []):
        lines.append(f"Note: {n}")
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    b, c = report["baseline"], report["candidate"]
    out = [
        f"### EdgeGate: {report['pipeline']} on {report['device']['name']}",
        "",
        f"| Metric | Baseline (FP32) run {b['run_id']} | Optimized (INT8) run {c['run_id']} | Delta | Source |",
        "|---|---:|---:|---:|---|",
    ]
    out += [f"| {' | '.join(r)} |" for r in table_rows(report)]
    out += ["", "| Gate | Status | Value | Limit |", "|---|---|---:|---:|"]
    for g in report["gates"]:
        val = "" if g["value"] is None else f"{g['value']:.4g}"
        lim = "" if g["limit"] is None else f"{g['limit']:.4g}"
        out.append(f"| `{g['expr']}` | {g['status']} | {val} | {lim} |")
    out += ["", *(f"**{ln.strip()}**" if i == 0 else ln for i, ln in enumerate(_verdict_lines(report)))]
    reused = reused_lines(report)
    if reused:
        out += ["", "Reused (deterministic host results; `--no-cache` computes them again): " + "; ".join(reused)]
    return "\n".join(out) + "\n"


def metric_label(name: str) -> str:
    defn = get_metric(name)
    return f"{name} ({defn.unit})" if defn.unit else name


# ----------------------------------------------------------------------------- comparisons


def _fmt_num(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def comparison_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(metric, baseline, candidate, delta, CI / test, status) rows; '~' marks a change that
    is not statistically significant (as asv prints it)."""
    rows = []
    for name, m in result["metrics"].items():
        delta = "—" if m.get("delta") is None else f"{m['delta']:+.4g}"
        if m.get("significant") is False:
            delta = "~" + delta
        if m.get("ratio_ci"):
            lo, hi = m["ratio_ci"]
            ci = f"x[{lo:.3f}, {hi:.3f}] p={m['p_value']:.2g}"
        elif m.get("ci"):
            lo, hi = m["ci"]
            ci = f"[{lo:+.4g}, {hi:+.4g}]" + (f" p={m['p_value']:.2g}" if m.get("p_value") is not None else "")
        else:
            ci = m.get("note", "")
        rows.append((name, _fmt_num(m.get("baseline")), _fmt_num(m.get("candidate")), delta, ci, m["status"]))
    return rows


def latency_notes(result: dict[str, Any]) -> list[str]:
    """How latency significance was decided, in a line or two under the table."""
    lat = next((m for m in result["metrics"].values() if m.get("test") and m.get("ratio_ci")), None)
    if lat is None:
        return []
    out = []
    re = result.get("rebench")
    if re:
        out.append(f"latency re-measured now, interleaved on {re['target']} ({re['source']}): {re['processes']} "
                   f"processes per side x {re['repeats']} repeats, {re['wall_s']} s")
    if lat.get("unit") == "process":
        out.append(f"latency test: {lat['test']}, {lat['processes'][0]} vs {lat['processes'][1]} processes"
                   + (f" ({lat['note']})" if lat.get("note") else ""))
        if not re and "baseline_run_id" in result:
            out.append("latency samples of stored runs were taken at different times: a machine that got slower "
                       "in between counts as a change; --rebench times both again side by side")
    elif lat.get("note"):
        out.append(f"latency test: {lat['test']} ({lat['note']})")
    return out


def render_comparison(result: dict[str, Any], fmt: str = "text") -> str:
    """A comparison (compare_metrics / compare_runs / compare_models result) as text, md or json."""
    if fmt == "json":
        return json.dumps(result, indent=1, default=str)
    head = ("Metric", "Baseline", "Candidate", "Delta", "95% CI / test", "Status")
    rows = comparison_rows(result)
    title = "Comparison"
    if "baseline_run_id" in result:
        title += f": run {result['baseline_run_id']} (baseline) vs run {result['candidate_run_id']} (candidate)"
    if result.get("comparison_id") is not None:
        title += f" [comparison {result['comparison_id']}]"
    verdict = result.get("verdict")
    notes = [*result.get("notes", []), *latency_notes(result)]  # toolchain drift / not recorded first
    if fmt == "md":
        lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|---|---:|---:|---:|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", *(f"- {n}" for n in notes)] if notes else []
        if verdict:
            lines += ["", f"**Verdict: {verdict}** (`~`: not statistically significant)"]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt_row = lambda r: "  ".join(c.ljust(w) if i in (0, 4, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [title, fmt_row(head), fmt_row(tuple("-" * w for w in widths))]
    lines += [fmt_row(r) for r in rows]
    lines += [""] + notes if notes else []
    if verdict:
        lines += ["", f"Verdict: {verdict}   (~ = not statistically significant)"]
    return "\n".join(lines)
