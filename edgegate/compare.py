"""Compare metrics: deltas, status by each metric's direction, and significance.

``compare_metrics`` is the metric-level step (no models, no database). Status is
``neutral`` when |delta| < the metric's threshold, else ``improved`` or ``regressed`` by
the metric's direction from the registry. With raw evidence it also answers "is this
real?":

* latency with raw samples: a latency change is ``regressed`` / ``improved`` only when it is
  beyond the threshold AND significant (p < alpha and the ratio's CI excludes 1), otherwise
  ``neutral`` with ``significant: false``. Samples from one benchmark process agree more
  closely than two processes do, so with >= 3 processes a side the test is on process-level
  values (each process's sum over graphs of per-graph medians): Mann-Whitney U, or Wilcoxon
  signed-rank when the sides were benchmarked interleaved (paired by process), with a
  bootstrap CI of the Hodges-Lehmann ratio. With fewer processes it falls back to the
  samples (Mann-Whitney U + bootstrap CI of the ratio of summed medians) and says the
  result is optimistic;
* quality metrics with paired per-sample records: a paired bootstrap CI of the delta
  (and McNemar's exact test on per-sample correctness where there is one); a change whose
  CI contains 0 is marked not significant (``~`` in reports, as asv prints it), its status
  still follows the threshold.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgegate.errors import InputError
from edgegate.metrics import Direction, MetricKind, get_metric
from edgegate.stats import (
    mann_whitney_u,
    mcnemar_exact,
    paired_bootstrap,
    process_ratio_test,
    process_values,
    sum_of_medians_ratio_ci,
)

log = logging.getLogger(__name__)

ThresholdValue = float | int | str
Threshold = ThresholdValue | Mapping[str, ThresholdValue]

ALPHA = 0.05
# Latency: two-sided, on process-level values; with the 2% threshold this keeps A/A false
# alarms <= 1% (bench/aa_false_alarm.py).
LATENCY_ALPHA = 0.01
MIN_PROCESSES = 3  # per side, for the process-level test
# Used when no threshold is given: timing figures move a little run to run, so a change
# must be a few percent before it is a regression (and significant: see module docstring).
DEFAULT_THRESHOLDS: dict[str, ThresholdValue] = {
    "default": 0.01,
    MetricKind.LATENCY.value: "2%",
    MetricKind.MEMORY.value: "5%",
    # load / compile time: one measurement per run, no samples to test; only big moves count
    MetricKind.TIME.value: "25%",
    MetricKind.SIZE.value: "1%",
}


def _parse_threshold(value: ThresholdValue, where: str) -> tuple[float, bool]:
    """(amount, relative) from 0.01 or "2%"."""
    if isinstance(value, bool):
        raise InputError(f"{where}: threshold must be a number or a percentage like '2%', got {value!r}")
    if isinstance(value, (int, float)):
        amount, relative = float(value), False
    elif isinstance(value, str) and value.strip().endswith("%"):
        try:
            amount, relative = float(value.strip()[:-1]) / 100.0, True
        except ValueError:
            raise InputError(f"{where}: threshold '{value}' is not a percentage like '2%'") from None
    else:
        try:
            amount, relative = float(value), False
        except (TypeError, ValueError):
            raise InputError(f"{where}: threshold {value!r} is not a number or a percentage like '2%'") from None
    if not math.isfinite(amount) or amount < 0:
        raise InputError(f"{where}: threshold {value!r} must be a finite number >= 0")
    return amount, relative


def resolve_threshold(threshold: Threshold | None, metric: str, baseline_value: float) -> float:
    """The absolute threshold for `metric`: a number, "x%" of the baseline, or a mapping
    keyed by metric name, then metric kind, then "default"."""
    defn = get_metric(metric)
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS
    if isinstance(threshold, Mapping):
        for key in (metric, defn.kind.value, "default"):
            if key in threshold:
                value = threshold[key]
                break
        else:
            value = DEFAULT_THRESHOLDS.get(defn.kind.value, DEFAULT_THRESHOLDS["default"])
    else:
        value = threshold
    amount, relative = _parse_threshold(value, f"threshold for {metric}")
    return amount * abs(baseline_value) if relative else amount


def parse_threshold_option(text: str | None) -> Threshold | None:
    """CLI form: "0.01", "2%", or "accuracy=0.02,latency=5%,default=0.01"."""
    if text is None:
        return None
    if "=" not in text:
        _parse_threshold(text, "--threshold")
        return text
    out: dict[str, ThresholdValue] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not key or not value:
            raise InputError(f"--threshold: '{part}' is not NAME=VALUE")
        _parse_threshold(value, f"--threshold {key}")
        out[key] = value
    return out


@dataclass(frozen=True)
class Evidence:
    """Raw material for significance: latency samples and per-sample score records."""

    # graph -> samples (ms), for each side; used for every timing metric
    baseline_latency: Mapping[str, Sequence[float]] = field(default_factory=dict)
    candidate_latency: Mapping[str, Sequence[float]] = field(default_factory=dict)
    # graph -> the benchmark process of each sample (aligned with the samples above)
    baseline_latency_process: Mapping[str, Sequence[int]] = field(default_factory=dict)
    candidate_latency_process: Mapping[str, Sequence[int]] = field(default_factory=dict)
    # both sides were benchmarked interleaved (targets.base.benchmark_interleaved): process i
    # of the baseline ran right next to process i of the candidate
    latency_paired: bool = False
    # paired per-sample records (same samples, same order) + how to aggregate a subset
    baseline_records: Sequence[Mapping[str, Any]] = ()
    candidate_records: Sequence[Mapping[str, Any]] = ()
    aggregate: Callable[[Sequence[Mapping[str, Any]]], Mapping[str, float]] | None = None
    n_resamples: int = 1000
    seed: int = 0


def _status(name: str, delta: float, threshold: float) -> str:
    if abs(delta) < threshold or delta == 0:
        return "neutral"
    better = delta > 0 if get_metric(name).direction is Direction.HIGHER else delta < 0
    return "improved" if better else "regressed"


def _latency_significant(p_value: float, lo: float, hi: float) -> bool:
    """A latency change is real when the test rejects (p < LATENCY_ALPHA) and the ratio's CI
    excludes 1 (no change)."""
    return p_value < LATENCY_ALPHA and not (lo <= 1.0 <= hi)


def _latency_stats(ev: Evidence) -> dict[str, Any] | None:
    graphs = sorted(set(ev.baseline_latency) & set(ev.candidate_latency))
    if not graphs:
        return None
    base = {g: ev.baseline_latency[g] for g in graphs}
    cand = {g: ev.candidate_latency[g] for g in graphs}
    bp = process_values(base, ev.baseline_latency_process)
    cp = process_values(cand, ev.candidate_latency_process)
    if len(bp) >= MIN_PROCESSES and len(cp) >= MIN_PROCESSES:
        # Run-to-run variance lives between processes: test process-level values.
        paired = ev.latency_paired and sorted(bp) == sorted(cp)
        keys = sorted(bp) if paired else None
        r = process_ratio_test(
            [bp[k] for k in keys] if keys else list(bp.values()),
            [cp[k] for k in keys] if keys else list(cp.values()),
            paired=paired, seed=ev.seed,
        )
        out = {
            "test": r.test, "unit": "process", "processes": [len(bp), len(cp)],
            "ratio": r.ratio, "ratio_ci": [r.lo, r.hi], "p_value": r.p_value,
            "significant": _latency_significant(r.p_value, r.lo, r.hi),
        }
        # The smallest two-sided p the rank test can give with this many processes.
        floor = 2 / 2 ** len(keys) if keys else 2 / math.comb(len(bp) + len(cp), len(bp))
        if floor >= LATENCY_ALPHA:
            out["note"] = (f"with {len(bp)} and {len(cp)} processes the test cannot reach p < {LATENCY_ALPHA}, so no "
                           "latency change can be significant; raise benchmark.processes (default 20)")
        return out
    ratio, lo, hi = sum_of_medians_ratio_ci(base, cand, n_resamples=2000, seed=ev.seed)
    pvals = {g: mann_whitney_u(base[g], cand[g])[1] for g in graphs}
    p = min(pvals.values())
    return {
        "test": "mann-whitney-u + bootstrap ratio of medians",
        "unit": "sample",
        "note": f"fewer than {MIN_PROCESSES} benchmark processes per side: samples from one process "
                "agree more closely than runs do, so this significance is optimistic",
        "ratio": ratio,
        "ratio_ci": [lo, hi],
        "p_value": p,
        "p_values": pvals,
        "significant": _latency_significant(p, lo, hi),
    }


def _quality_stats(ev: Evidence) -> dict[str, dict[str, Any]]:
    if ev.aggregate is None or not ev.baseline_records or len(ev.baseline_records) != len(ev.candidate_records):
        return {}
    base = list(ev.baseline_records)
    cand = list(ev.candidate_records)
    agg = ev.aggregate

    def deltas(idx: np.ndarray) -> dict[str, float]:
        b = agg([base[i] for i in idx])
        c = agg([cand[i] for i in idx])
        return {k: c[k] - b[k] for k in c if k in b}

    cis = paired_bootstrap(len(base), deltas, n_resamples=ev.n_resamples, seed=ev.seed)
    out: dict[str, dict[str, Any]] = {}
    for name, (lo, hi) in cis.items():
        out[name] = {"test": "paired bootstrap", "ci": [lo, hi], "significant": not (lo <= 0.0 <= hi)}
    # McNemar on per-sample correctness, where the records carry it.
    if all("correct" in r for r in base) and all("correct" in r for r in cand):
        b_only = sum(1 for x, y in zip(base, cand) if bool(x["correct"]) and not bool(y["correct"]))
        c_only = sum(1 for x, y in zip(base, cand) if not bool(x["correct"]) and bool(y["correct"]))
        p = mcnemar_exact(b_only, c_only)
        if "accuracy" in out:
            out["accuracy"].update(
                {"test": "paired bootstrap + mcnemar exact", "p_value": p, "discordant": [b_only, c_only],
                 "significant": out["accuracy"]["significant"] and p < ALPHA}
            )
    return out


def compare_metrics(
    baseline: Mapping[str, float],
    candidate: Mapping[str, float],
    threshold: Threshold | None = 0.01,
    *,
    evidence: Evidence | None = None,
    sources: tuple[Mapping[str, str], Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Compare two metric dicts: ``{"metrics": {name: {baseline, candidate, delta, status, ...}}}``.

    Every metric present on both sides is compared (a metric missing from one side is
    reported with status ``missing``). `sources` (baseline, candidate) marks timing metrics
    measured in different places as ``incomparable`` instead of giving them a status.
    """
    out: dict[str, Any] = {}
    lat = _latency_stats(evidence) if evidence else None
    qual = _quality_stats(evidence) if evidence else {}
    for name in dict.fromkeys([*baseline, *candidate]):
        defn = get_metric(name)
        if name not in baseline or name not in candidate:
            out[name] = {"baseline": baseline.get(name), "candidate": candidate.get(name), "delta": None,
                         "status": "missing", "unit": defn.unit, "direction": defn.direction.value}
            continue
        b, c = float(baseline[name]), float(candidate[name])
        delta = round(c - b, 12)  # 0.75 - 0.70 is 0.05, not 0.050000000000000044
        thr = resolve_threshold(threshold, name, b)
        entry: dict[str, Any] = {
            "baseline": b, "candidate": c, "delta": delta,
            "relative": (delta / b) if b else None,
            "threshold": thr, "unit": defn.unit, "direction": defn.direction.value,
        }
        status = _status(name, delta, thr)
        if sources is not None and defn.timing:
            sb, sc = sources[0].get(name), sources[1].get(name)
            if sb != sc:
                entry.update({"status": "incomparable", "note": f"sources differ: {sb} vs {sc}", "significant": None})
                out[name] = entry
                continue
        if defn.kind is MetricKind.LATENCY and lat is not None:
            entry.update({k: lat[k] for k in ("test", "unit", "processes", "note", "ratio", "ratio_ci", "p_value",
                                              "significant") if k in lat})
            if status != "neutral" and not lat["significant"]:
                status = "neutral"
        elif name in qual:
            entry.update(qual[name])
        entry["status"] = status
        if status == "regressed":
            log.warning("regression: %s %.6g -> %.6g (%+.6g)%s", name, b, c, delta,
                        "" if entry.get("significant", True) else " (not significant)")
        out[name] = entry
    return {"metrics": out}


def notes_for(result: Mapping[str, Any]) -> str:
    """One line per changed metric, e.g. 'accuracy: +0.04' (for the comparisons table)."""
    parts = []
    for name, m in result["metrics"].items():
        if m.get("delta") is None or m["status"] in ("neutral", "missing", "incomparable"):
            continue
        mark = "" if m.get("significant", True) is not False else " ~"
        parts.append(f"{name}: {m['delta']:+.4g}{mark}")
    return "; ".join(parts)


def verdict_for(result: Mapping[str, Any]) -> str:
    statuses = {m["status"] for m in result["metrics"].values()}
    if "regressed" in statuses:
        return "regressed"
    if "improved" in statuses:
        return "improved"
    return "neutral"
