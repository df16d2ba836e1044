from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from edgegate.stats import (
    LatencySummary,
    bootstrap_ci,
    mann_whitney_u,
    mcnemar_exact,
    ratio_of_medians_ci,
    summarize_latency,
)


def test_summary_matches_numpy() -> None:
    data = [12.0, 10.0, 11.0, 15.0, 10.5, 30.0, 11.5, 12.5, 10.2, 13.0]
    s = summarize_latency(data)
    arr = np.array(data)
    assert s.n == 10
    assert s.min == 10.0 and s.max == 30.0
    assert s.median == pytest.approx(np.median(arr))
    assert s.mean == pytest.approx(arr.mean())
    assert s.p90 == pytest.approx(np.percentile(arr, 90))
    assert s.p99 == pytest.approx(np.percentile(arr, 99))
    assert s.std == pytest.approx(arr.std(ddof=1))
    # Linear interpolation, by hand: sorted[8] + 0.1 * (sorted[9] - sorted[8]).
    assert s.p90 == pytest.approx(15.0 + 0.1 * (30.0 - 15.0))
    d = s.to_dict()
    assert list(d) == ["n", "min", "median", "mean", "p90", "p99", "std", "max"]
    assert all(isinstance(v, float) for v in d.values())


def test_summary_single_and_empty() -> None:
    assert summarize_latency([4.0]) == LatencySummary(1, 4.0, 4.0, 4.0, 4.0, 4.0, 0.0, 4.0)
    with pytest.raises(ValueError, match="no samples"):
        summarize_latency([])


def test_bootstrap_ci_contains_true_median_and_is_deterministic() -> None:
    rng = np.random.default_rng(123)
    values = rng.normal(loc=10.0, scale=2.0, size=2000)
    lo, hi = bootstrap_ci(values)
    assert lo < 10.0 < hi
    assert hi - lo < 0.5
    assert bootstrap_ci(values) == (lo, hi)
    assert bootstrap_ci(values, seed=1) != (lo, hi)
    mlo, mhi = bootstrap_ci(values, np.mean, n_resamples=500, confidence=0.9)
    assert mlo < values.mean() < mhi


def test_bootstrap_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], confidence=1.5)


def test_ratio_of_medians_ci() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(10.0, 0.5, size=400)
    b = rng.normal(12.0, 0.5, size=400)
    point, lo, hi = ratio_of_medians_ci(a, b)
    assert point == pytest.approx(np.median(b) / np.median(a))
    assert lo < point < hi
    assert lo < 1.2 < hi
    assert ratio_of_medians_ci(a, b) == (point, lo, hi)


def test_mann_whitney() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(10.0, 1.0, size=50)
    _, p_shift = mann_whitney_u(a, a + 2.0)
    assert p_shift < 1e-6
    u, p_same = mann_whitney_u(a, a.copy())
    assert p_same > 0.9
    assert u == pytest.approx(50 * 50 / 2)


def test_mcnemar_exact_known_case() -> None:
    # b=1, c=9: 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 2 * 11 / 1024.
    exact = Fraction(2 * (comb(10, 0) + comb(10, 1)), 2**10)
    assert mcnemar_exact(1, 9) == float(exact) == 0.021484375
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_process_values_sum_per_process_medians() -> None:
    from edgegate.stats import process_values

    samples = {"a": [1.0, 3.0, 2.0, 10.0, 12.0, 5.0], "b": [0.5, 0.5, 7.0, 1.0]}
    procs = {"a": [0, 0, 0, 1, 1, 2], "b": [0, 0, 1, 1]}
    # process 2 timed only graph a: left out
    assert process_values(samples, procs) == {0: 2.0 + 0.5, 1: 11.0 + 4.0}
    assert process_values(samples, {"a": [0] * 6}) == {}  # graph b has no process ids
    assert process_values(samples, {"a": [0, 0], "b": [0, 0, 1, 1]}) == {}  # misaligned


def test_process_ratio_test_paired_and_unpaired() -> None:
    import numpy as np

    from edgegate.stats import process_ratio_test

    rng = np.random.default_rng(0)
    base = 3.0 * (1 + 0.02 * rng.standard_normal(20))
    same = process_ratio_test(base, base, paired=True)
    assert same.ratio == 1.0 and same.p_value == 1.0
    slow = process_ratio_test(base, base * 1.05 * (1 + 0.005 * rng.standard_normal(20)), paired=True)
    assert slow.p_value < 1e-4 and slow.lo < 1.05 < slow.hi and abs(slow.ratio - 1.05) < 0.01
    un = process_ratio_test(base, 3.15 * (1 + 0.02 * rng.standard_normal(20)), paired=False)
    assert un.test.startswith("mann-whitney") and un.p_value < 0.01 and un.lo < 1.05 < un.hi
    with pytest.raises(ValueError, match="differ in length"):
        process_ratio_test(base, base[:5], paired=True)
