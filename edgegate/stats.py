"""Summaries and statistics, computed once and the same way for every target.

Targets return raw samples; everything derived from them (percentiles, confidence
intervals, significance tests) is computed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as _sp

# Bootstrap resamples are drawn in chunks so memory stays bounded for long sample lists.
_MAX_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class LatencySummary:
    """Latency summary in milliseconds (percentiles with linear interpolation)."""

    n: int
    min: float
    median: float
    mean: float
    p90: float
    p99: float
    std: float  # sample standard deviation (ddof=1); 0.0 for a single sample
    max: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _as_array(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError(f"{what}: no samples")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: samples must be finite numbers")
    return arr


def summarize_latency(samples_ms: Sequence[float]) -> LatencySummary:
    arr = _as_array(samples_ms, "summarize_latency")
    p50, p90, p99 = np.percentile(arr, [50, 90, 99], method="linear")
    return LatencySummary(
        n=int(arr.size),
        min=float(arr.min()),
        median=float(p50),
        mean=float(arr.mean()),
        p90=float(p90),
        p99=float(p99),
        std=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        max=float(arr.max()),
    )


def cascade_latency(summaries: Sequence[LatencySummary]) -> dict[str, float]:
    """A multi-graph model's latency, one pass of every graph: the sums of per-graph medians and minima."""
    return {"inference_time_ms": sum(s.median for s in summaries), "latency_min_ms": sum(s.min for s in summaries)}


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


def _percentile_interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    """(lo, hi): the central ``confidence`` interval of bootstrap draws (percentile method)."""
    alpha = 1.0 - confidence
    lo, hi = np.percentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _bootstrap_stats(
    arr: np.ndarray,
    statistic: Callable[..., Any],
    n_resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``statistic`` of ``n_resamples`` resamples of ``arr``, vectorised along axis 1."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    chunk = max(1, _MAX_CHUNK_ELEMENTS // arr.size)
    out = np.empty(n_resamples, dtype=float)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, arr.size, size=(stop - start, arr.size))
        out[start:stop] = statistic(arr[idx], axis=1)
    return out


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[..., Any] = np.median,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` (which must accept
    ``axis=``, as numpy reductions do). Deterministic for a given seed."""
    _check_confidence(confidence)
    arr = _as_array(values, "bootstrap_ci")
    boots = _bootstrap_stats(arr, statistic, n_resamples, np.random.default_rng(seed))
    return _percentile_interval(boots, confidence)


def ratio_of_medians_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(point, lo, hi) of median(b) / median(a); ``a`` and ``b`` are resampled
    independently (unpaired samples, e.g. baseline and candidate latencies)."""
    _check_confidence(confidence)
    arr_a = _as_array(a, "ratio_of_medians_ci (a)")
    arr_b = _as_array(b, "ratio_of_medians_ci (b)")
    med_a = float(np.median(arr_a))
    if med_a == 0.0:
        raise ValueError("ratio_of_medians_ci: median of a is 0; the ratio is undefined")
    rng = np.random.default_rng(seed)
    boot_a = _bootstrap_stats(arr_a, np.median, n_resamples, rng)
    boot_b = _bootstrap_stats(arr_b, np.median, n_resamples, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot_b / boot_a
    lo, hi = _percentile_interval(ratios, confidence)
    return float(np.median(arr_b)) / med_a, lo, hi


def mann_whitney_u(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """(U statistic of ``a``, two-sided p-value)."""
    arr_a = _as_array(a, "mann_whitney_u (a)")
    arr_b = _as_array(b, "mann_whitney_u (b)")
    res = _sp.mannwhitneyu(arr_a, arr_b, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pair counts ``b`` and ``c``
    (binomial test of min(b, c) under p = 0.5), computed with exact integers."""
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_exact: counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def sum_of_medians_ratio_ci(
    baseline: Mapping[str, Sequence[float]],
    candidate: Mapping[str, Sequence[float]],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(point, lo, hi) of sum(median(candidate[g])) / sum(median(baseline[g])) over graphs g.

    A multi-graph model's latency is the sum of its graphs' medians; every graph's samples
    are resampled independently (unpaired), in both runs.
    """
    _check_confidence(confidence)
    graphs = sorted(set(baseline) & set(candidate))
    if not graphs:
        raise ValueError("sum_of_medians_ratio_ci: no graph measured in both runs")
    rng = np.random.default_rng(seed)
    boot_a = np.zeros(n_resamples)
    boot_b = np.zeros(n_resamples)
    point_a = point_b = 0.0
    for g in graphs:
        a = _as_array(baseline[g], f"baseline[{g}]")
        b = _as_array(candidate[g], f"candidate[{g}]")
        point_a += float(np.median(a))
        point_b += float(np.median(b))
        boot_a += _bootstrap_stats(a, np.median, n_resamples, rng)
        boot_b += _bootstrap_stats(b, np.median, n_resamples, rng)
    if point_a == 0.0:
        raise ValueError("sum_of_medians_ratio_ci: baseline medians sum to 0")
    lo, hi = _percentile_interval(boot_b / boot_a, confidence)
    return point_b / point_a, lo, hi


def process_values(
    samples: Mapping[str, Sequence[float]], processes: Mapping[str, Sequence[int]]
) -> dict[int, float]:
    """process -> sum over graphs of the median of that graph's samples taken in that process.

    One value per benchmark process: the replicate that run-to-run variance shows up in.
    Only processes that timed every graph count; a graph without process ids gives {}.
    """
    graphs = sorted(samples)
    if not graphs or any(len(processes.get(g, ())) != len(samples[g]) for g in graphs):
        return {}
    per: dict[int, dict[str, list[float]]] = {}
    for g in graphs:
        for v, p in zip(samples[g], processes[g]):
            per.setdefault(int(p), {}).setdefault(g, []).append(float(v))
    return {p: float(sum(np.median(d[g]) for g in graphs)) for p, d in sorted(per.items()) if len(d) == len(graphs)}


def _walsh_median(x: np.ndarray) -> np.ndarray:
    """Hodges-Lehmann one-sample estimate along axis 1: the median of the Walsh averages."""
    n = x.shape[1]
    i, j = np.triu_indices(n)
    return np.median((x[:, i] + x[:, j]) / 2.0, axis=1)


def _shift_median(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hodges-Lehmann two-sample estimate along axis 1: median of all differences b_j - a_i."""
    return np.median((b[:, :, None] - a[:, None, :]).reshape(b.shape[0], -1), axis=1)


@dataclass(frozen=True)
class RatioTest:
    ratio: float  # candidate / baseline, the Hodges-Lehmann estimate on log latency
    lo: float
    hi: float
    p_value: float  # two-sided
    test: str


def process_ratio_test(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    paired: bool,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> RatioTest:
    """Latency ratio between two sets of process-level values (one per benchmark process).

    paired (interleaved A/B, process i of each side run back to back): Wilcoxon signed-rank on
    the log ratios; unpaired (runs at different times): Mann-Whitney U on the logs. The
    estimate is the matching Hodges-Lehmann shift on log latency, its CI a percentile
    bootstrap over processes (pairs when paired).
    """
    _check_confidence(confidence)
    a = np.log(_as_array(baseline, "baseline process values"))
    b = np.log(_as_array(candidate, "candidate process values"))
    rng = np.random.default_rng(seed)
    if paired:
        if a.size != b.size:
            raise ValueError(f"process_ratio_test: paired sides differ in length ({a.size} vs {b.size})")
        d = b - a
        point = float(_walsh_median(d[None, :])[0])
        boot = _walsh_median(d[rng.integers(0, d.size, size=(n_resamples, d.size))])
        p = 1.0 if not np.any(d) else float(_sp.wilcoxon(d, alternative="two-sided").pvalue)
        test = "wilcoxon signed-rank on paired process values (interleaved A/B)"
    else:
        point = float(_shift_median(a[None, :], b[None, :])[0])
        boot = _shift_median(a[rng.integers(0, a.size, size=(n_resamples, a.size))],
                             b[rng.integers(0, b.size, size=(n_resamples, b.size))])
        p = float(_sp.mannwhitneyu(b, a, alternative="two-sided").pvalue)
        test = "mann-whitney-u on process values"
    lo, hi = _percentile_interval(boot, confidence)
    return RatioTest(float(np.exp(point)), float(np.exp(lo)), float(np.exp(hi)), p, test)


def paired_bootstrap(
    n: int,
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile CIs of every value `statistic(idx)` returns, over paired resamples.

    `idx` is a resample (with replacement) of range(n), the same indices for baseline and
    candidate, so `statistic` can return e.g. candidate-minus-baseline deltas computed on
    the same samples. Values that come back NaN in a resample are ignored for that key.
    """
    _check_confidence(confidence)
    if n < 1:
        raise ValueError("paired_bootstrap: no samples")
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        for k, v in statistic(idx).items():
            draws.setdefault(k, []).append(float(v))
    out = {}
    for k, vals in draws.items():
        arr = np.asarray(vals)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            out[k] = _percentile_interval(arr, confidence)
    return out
