"""compare_metrics: deltas, statuses by direction, thresholds, significance."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgegate.compare import Evidence, compare_metrics, notes_for, parse_threshold_option, resolve_threshold, verdict_for
from edgegate.errors import InputError, UnknownNameError


def test_accuracy_improves() -> None:
    m = compare_metrics({"accuracy": 0.70}, {"accuracy": 0.75})["metrics"]["accuracy"]
    assert m["delta"] == 0.05 and m["status"] == "improved"
    assert (m["baseline"], m["candidate"]) == (0.70, 0.75)


def test_accuracy_regresses_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgegate.compare"):
        m = compare_metrics({"accuracy": 0.80}, {"accuracy": 0.72})["metrics"]["accuracy"]
    assert m["delta"] == -0.08 and m["status"] == "regressed"
    assert any("regression: accuracy" in r.getMessage() for r in caplog.records)


def test_loss_within_threshold_is_neutral() -> None:
    m = compare_metrics({"loss": 0.50}, {"loss": 0.51}, threshold=0.02)["metrics"]["loss"]
    assert m["delta"] == 0.01 and m["status"] == "neutral"


def test_lower_is_better_metrics() -> None:
    res = compare_metrics({"loss": 0.50, "perplexity": 10.0}, {"loss": 0.40, "perplexity": 12.0})["metrics"]
    assert res["loss"]["status"] == "improved" and res["perplexity"]["status"] == "regressed"


def test_one_entry_per_metric() -> None:
    res = compare_metrics(
        {"accuracy": 0.9, "loss": 0.3, "perplexity": 1.35}, {"accuracy": 0.91, "loss": 0.31, "perplexity": 1.36}
    )
    assert sorted(res["metrics"]) == ["accuracy", "loss", "perplexity"]


def test_relative_and_per_metric_thresholds() -> None:
    assert resolve_threshold("2%", "inference_time_ms", 50.0) == pytest.approx(1.0)
    assert resolve_threshold({"accuracy": 0.05, "default": 0.01}, "accuracy", 0.9) == 0.05
    assert resolve_threshold({"latency": "10%", "default": 0.01}, "inference_time_ms", 20.0) == pytest.approx(2.0)
    assert resolve_threshold({"default": 0.03}, "f1", 0.5) == 0.03
    res = compare_metrics({"inference_time_ms": 50.0}, {"inference_time_ms": 50.9}, threshold="2%")
    assert res["metrics"]["inference_time_ms"]["status"] == "neutral"
    res = compare_metrics({"inference_time_ms": 50.0}, {"inference_time_ms": 51.5}, threshold="2%")
    assert res["metrics"]["inference_time_ms"]["status"] == "regressed"


def test_threshold_option_parsing_and_errors() -> None:
    assert parse_threshold_option("0.02") == "0.02"
    assert parse_threshold_option("accuracy=0.02,latency=5%") == {"accuracy": "0.02", "latency": "5%"}
    with pytest.raises(InputError, match="not NAME=VALUE"):
        parse_threshold_option("accuracy=0.02,=3")
    with pytest.raises(InputError, match="not a percentage"):
        resolve_threshold("abc%", "accuracy", 1.0)
    with pytest.raises(UnknownNameError, match="did you mean 'accuracy'"):
        compare_metrics({"acuracy": 1.0}, {"acuracy": 1.0})


def test_missing_metric_and_notes() -> None:
    res = compare_metrics({"accuracy": 0.70, "f1": 0.5}, {"accuracy": 0.74})
    assert res["metrics"]["f1"]["status"] == "missing"
    assert notes_for(res) == "accuracy: +0.04"
    assert verdict_for(res) == "improved"


def _lat(rng: np.random.Generator, median: float, n: int = 50) -> list[float]:
    return list(median * (1 + 0.02 * rng.standard_normal(n)))


def test_latency_regression_needs_significance() -> None:
    rng = np.random.default_rng(1)
    base, slow = _lat(rng, 10.0), _lat(rng, 10.5)
    ev = Evidence(baseline_latency={"g": base}, candidate_latency={"g": slow})
    m = compare_metrics({"inference_time_ms": 10.0}, {"inference_time_ms": 10.5}, "2%", evidence=ev)["metrics"]
    m = m["inference_time_ms"]
    assert m["status"] == "regressed" and m["significant"] is True
    assert m["p_value"] < 0.001 and 1.0 < m["ratio_ci"][0] < m["ratio_ci"][1]

    # Beyond the threshold on the point values, but the samples say it is noise.
    noisy_b = list(10.0 * (1 + 0.3 * rng.standard_normal(5)))
    noisy_c = list(10.5 * (1 + 0.3 * rng.standard_normal(5)))
    ev = Evidence(baseline_latency={"g": noisy_b}, candidate_latency={"g": noisy_c})
    m = compare_metrics({"inference_time_ms": 10.0}, {"inference_time_ms": 10.5}, "2%", evidence=ev)["metrics"]
    assert m["inference_time_ms"]["status"] == "neutral" and m["inference_time_ms"]["significant"] is False


def test_timing_from_different_sources_is_incomparable() -> None:
    res = compare_metrics(
        {"inference_time_ms": 3.0}, {"inference_time_ms": 500.0},
        sources=({"inference_time_ms": "host-cpu"}, {"inference_time_ms": "host-emulator"}),
    )["metrics"]["inference_time_ms"]
    assert res["status"] == "incomparable" and res["note"] == "sources differ: host-cpu vs host-emulator"


def test_paired_bootstrap_and_mcnemar_on_records() -> None:
    # 100 paired samples: the candidate gets 10 right that the baseline got wrong, 0 the other way.
    base = [{"correct": i < 70} for i in range(100)]
    cand = [{"correct": i < 80} for i in range(100)]

    def aggregate(rs):
        return {"accuracy": float(np.mean([r["correct"] for r in rs]))}

    ev = Evidence(baseline_records=base, candidate_records=cand, aggregate=aggregate)
    m = compare_metrics({"accuracy": 0.70}, {"accuracy": 0.80}, evidence=ev)["metrics"]["accuracy"]
    assert m["status"] == "improved" and m["significant"] is True
    assert m["discordant"] == [0, 10] and m["p_value"] == pytest.approx(2 / 1024)
    lo, hi = m["ci"]
    assert 0.0 < lo < 0.1 < hi

    # One flip in 100: within noise, marked not significant, status still by threshold.
    cand2 = [{"correct": i < 71} for i in range(100)]
    ev2 = Evidence(baseline_records=base, candidate_records=cand2, aggregate=aggregate)
    m2 = compare_metrics({"accuracy": 0.70}, {"accuracy": 0.71}, threshold=0.005, evidence=ev2)["metrics"]["accuracy"]
    assert m2["status"] == "improved" and m2["significant"] is False
    assert notes_for({"metrics": {"accuracy": m2}}) == "accuracy: +0.01 ~"


def _procs(rng: np.random.Generator, levels: list[float], n: int = 50, noise: float = 0.001):
    """Samples from one process per level: tight inside a process, offsets between them."""
    samples = [x for lv in levels for x in lv * (1 + noise * rng.standard_normal(n))]
    ids = [i for i, _ in enumerate(levels) for _ in range(n)]
    return samples, ids


def test_latency_significance_is_tested_between_processes() -> None:
    # Each process's samples agree to 0.1% while processes sit a few percent apart: pooled
    # samples would call a 3% move significant (pseudo-replication); 3 processes a side cannot.
    rng = np.random.default_rng(3)
    b, bi = _procs(rng, [1.00, 1.04, 0.98])
    c, ci = _procs(rng, [1.03, 1.07, 1.01])
    vals = ({"inference_time_ms": float(np.median(b))}, {"inference_time_ms": float(np.median(c))})
    pooled = compare_metrics(*vals, "2%", evidence=Evidence(baseline_latency={"g": b}, candidate_latency={"g": c}))
    pooled = pooled["metrics"]["inference_time_ms"]
    assert pooled["unit"] == "sample" and pooled["significant"] is True and "optimistic" in pooled["note"]
    ev = Evidence(baseline_latency={"g": b}, candidate_latency={"g": c},
                  baseline_latency_process={"g": bi}, candidate_latency_process={"g": ci})
    m = compare_metrics(*vals, "2%", evidence=ev)["metrics"]["inference_time_ms"]
    assert m["unit"] == "process" and m["processes"] == [3, 3] and m["test"].startswith("mann-whitney-u on process")
    assert m["significant"] is False and m["status"] == "neutral"
    assert "cannot reach p < 0.01" in m["note"]  # 3 vs 3: the smallest p is 0.1


def test_interleaved_processes_are_paired() -> None:
    # 20 process pairs sharing a drifting machine (+-6%), the candidate 5% slower in each pair:
    # unpaired, the drift hides it; paired by process (interleaved A/B), it is found.
    rng = np.random.default_rng(4)
    drift = 1 + 0.06 * np.sin(np.arange(20) / 3)
    b, bi = _procs(rng, list(drift * (1 + 0.01 * rng.standard_normal(20))))
    c, ci = _procs(rng, list(1.05 * drift * (1 + 0.01 * rng.standard_normal(20))))
    vals = ({"inference_time_ms": float(np.median(b))}, {"inference_time_ms": float(np.median(c))})
    kw = dict(baseline_latency={"g": b}, candidate_latency={"g": c},
              baseline_latency_process={"g": bi}, candidate_latency_process={"g": ci})
    paired = compare_metrics(*vals, "2%", evidence=Evidence(**kw, latency_paired=True))["metrics"]["inference_time_ms"]
    assert paired["test"].startswith("wilcoxon") and paired["status"] == "regressed" and paired["p_value"] < 0.001
    assert paired["ratio_ci"][0] < 1.05 < paired["ratio_ci"][1] and "note" not in paired
    unpaired = compare_metrics(*vals, "2%", evidence=Evidence(**kw))["metrics"]["inference_time_ms"]
    assert unpaired["p_value"] > paired["p_value"] * 100
