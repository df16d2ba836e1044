from __future__ import annotations

import pytest

from edgegate.errors import UnknownNameError
from edgegate.metrics import (
    Direction,
    MetricDef,
    MetricKind,
    all_metrics,
    format_suggestion,
    get_metric,
    is_better,
    register_metric,
)


def test_builtins_have_direction_unit_kind() -> None:
    expected = {
        "accuracy": (Direction.HIGHER, "ratio", MetricKind.QUALITY),
        "baseline_agreement": (Direction.HIGHER, "ratio", MetricKind.QUALITY),
        "loss": (Direction.LOWER, "", MetricKind.LOSS),
        "perplexity": (Direction.LOWER, "", MetricKind.LOSS),
        "inference_time_ms": (Direction.LOWER, "ms", MetricKind.LATENCY),
        "latency_p99_ms": (Direction.LOWER, "ms", MetricKind.LATENCY),
        "compile_time_ms": (Direction.LOWER, "ms", MetricKind.TIME),
        "peak_memory_mb": (Direction.LOWER, "MB", MetricKind.MEMORY),
        "model_size_kb": (Direction.LOWER, "KB", MetricKind.SIZE),
        "model_size_mb": (Direction.LOWER, "MB", MetricKind.SIZE),
        "compiled_size_kb": (Direction.LOWER, "KB", MetricKind.SIZE),
        "npu_fraction": (Direction.HIGHER, "ratio", MetricKind.PLACEMENT),
        "npu_nodes": (Direction.HIGHER, "nodes", MetricKind.PLACEMENT),
        "cpu_nodes": (Direction.LOWER, "nodes", MetricKind.PLACEMENT),
        "macro_f1": (Direction.HIGHER, "ratio", MetricKind.QUALITY),
        "cosine_agreement": (Direction.HIGHER, "ratio", MetricKind.QUALITY),
        "next_token_accuracy": (Direction.HIGHER, "ratio", MetricKind.QUALITY),
    }
    for name, (direction, unit, kind) in expected.items():
        m = get_metric(name)
        assert (m.direction, m.unit, m.kind) == (direction, unit, kind), name
        assert m.description
    names = [m.name for m in all_metrics()]
    assert names == sorted(names)
    assert len(names) == 38


def test_timing_property() -> None:
    assert get_metric("inference_time_ms").timing
    assert get_metric("peak_memory_mb").timing
    assert get_metric("load_time_ms").timing
    assert not get_metric("accuracy").timing
    assert not get_metric("model_size_kb").timing
    assert not get_metric("npu_fraction").timing


def test_is_better_follows_direction() -> None:
    assert is_better("accuracy", 0.9, 0.8)
    assert not is_better("accuracy", 0.8, 0.9)
    assert is_better("inference_time_ms", 10.0, 12.0)
    assert not is_better("perplexity", 12.0, 10.0)
    assert not is_better("accuracy", 0.9, 0.9)


def test_unknown_metric_did_you_mean() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_metric("acuracy")
    assert str(info.value) == "unknown metric 'acuracy' (did you mean 'accuracy', 'top5_accuracy' or 'top1_accuracy'?)"


def test_unknown_metric_lists_known_when_nothing_close() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_metric("zzz")
    assert str(info.value) == (
        "unknown metric 'zzz' (known: accuracy, adversarial_coverage, adversarial_disagreement_rate, "
        "baseline_agreement, compile_time_ms, compiled_size_kb, compiled_size_mb, cosine_agreement, "
        "... (38 in all))"
    )


def test_duplicate_registration_rejected() -> None:
    with pytest.raises(ValueError, match="metric 'accuracy' is already registered"):
        register_metric(
            MetricDef("accuracy", "ratio", Direction.HIGHER, MetricKind.QUALITY, "again")
        )


def test_format_suggestion_several() -> None:
    assert format_suggestion("latency_p9_ms", ["latency_p90_ms", "latency_p99_ms"]) == (
        " (did you mean 'latency_p99_ms' or 'latency_p90_ms'?)"  # closest first
    )
    assert format_suggestion("xyz", ["accuracy"]) == ""
