from __future__ import annotations

import pytest

from edgegate.errors import GateExpressionError
from edgegate.gates import (
    Gate,
    GateStatus,
    evaluate_gate,
    evaluate_gates,
    parse_gate,
    verdict,
)
from edgegate.metrics import Measurement, Source

COMPUTED = Source.COMPUTED


def m(value: float, source: Source = COMPUTED) -> Measurement:
    return Measurement(value, source)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("expr", "op", "threshold", "relative"),
    [
        ("accuracy >= 0.99 * baseline", ">=", 0.99, True),
        ("accuracy>=0.99*baseline", ">=", 0.99, True),
        ("  accuracy   >=   baseline  ", ">=", 1.0, True),
        ("accuracy >= baseline * 0.98", ">=", 0.98, True),
        ("inference_time_ms <= 50", "<=", 50.0, False),
        ("inference_time_ms < 1e-3", "<", 0.001, False),
        ("accuracy > .5", ">", 0.5, False),
        ("cpu_nodes == 0", "==", 0.0, False),
        ("npu_nodes != -2", "!=", -2.0, False),
        ("accuracy == true", "==", 1.0, False),
        ("accuracy != false", "!=", 0.0, False),
        ("model_size_kb <= 1.2E+3", "<=", 1200.0, False),
    ],
)
def test_parse_valid(expr: str, op: str, threshold: float, relative: bool) -> None:
    gate = parse_gate(expr)
    assert (gate.op, gate.threshold, gate.relative) == (op, threshold, relative)
    assert gate.expr == expr
    assert gate.allow_host_timing is False


def test_describe_is_canonical() -> None:
    assert parse_gate("accuracy>=baseline*0.99").describe() == "accuracy >= 0.99 * baseline"
    assert parse_gate("inference_time_ms<=50", allow_host_timing=True).describe() == (
        "inference_time_ms <= 50 (host timing allowed)"
    )


FORM = " (form: METRIC OP NUMBER [* baseline], e.g. 'accuracy >= 0.99 * baseline')"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("accuracy >=", "gate 'accuracy >=': expected a number at column 12, found end of expression" + FORM),
        ("accuracy = 0.9", "gate 'accuracy = 0.9': unexpected character '=' at column 10"),
        ("accuracy >= 0.9 +", "gate 'accuracy >= 0.9 +': unexpected character '+' at column 17"),
        ("0.9 <= accuracy", "gate '0.9 <= accuracy': expected a metric name at column 1, found '0.9'" + FORM),
        ("accuracy 0.9", "gate 'accuracy 0.9': expected a comparison operator (<=, <, >=, >, ==, !=) at column 10, found '0.9'" + FORM),
        ("accuracy >= 0.9 * 2", "gate 'accuracy >= 0.9 * 2': expected 'baseline' at column 19, found '2'" + FORM),
        ("accuracy >= baseline *", "gate 'accuracy >= baseline *': expected a number at column 23, found end of expression" + FORM),
        ("accuracy >= 0.9 and 1", "gate 'accuracy >= 0.9 and 1': expected end of expression at column 17, found 'and'" + FORM),
        ("__import__('os') >= 1", "gate '__import__('os') >= 1': unexpected character '(' at column 11"),
        ("   ", "gate '': empty expression (form: METRIC OP NUMBER [* baseline])"),
        ("acuracy >= 0.9", "gate 'acuracy >= 0.9': unknown metric 'acuracy' (did you mean 'accuracy', 'top5_accuracy' or 'top1_accuracy'?)"),
    ],
)
def test_parse_errors(expr: str, message: str) -> None:
    with pytest.raises(GateExpressionError) as info:
        parse_gate(expr)
    assert str(info.value) == message


def test_unchecked_metric_allowed() -> None:
    gate = parse_gate("reproducible == true", check_metric=False)
    assert gate.metric == "reproducible"
    result = evaluate_gate(gate, {"reproducible": m(1.0)}, None)
    assert result.status is GateStatus.PASS


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize(
    ("op", "value", "passes"),
    [
        ("<=", 50.0, True), ("<=", 50.1, False),
        ("<", 49.9, True), ("<", 50.0, False),
        (">=", 50.0, True), (">=", 49.9, False),
        (">", 50.1, True), (">", 50.0, False),
        ("==", 50.0, True), ("==", 49.0, False),
        ("!=", 49.0, True), ("!=", 50.0, False),
    ],
)
def test_every_operator(op: str, value: float, passes: bool) -> None:
    gate = parse_gate(f"model_size_kb {op} 50")
    result = evaluate_gate(gate, {"model_size_kb": m(value)}, None)
    assert result.status is (GateStatus.PASS if passes else GateStatus.FAIL)
    assert result.value == value and result.limit == 50.0 and result.source is COMPUTED


def test_relative_gate_pass_and_fail() -> None:
    gate = parse_gate("accuracy >= 0.99 * baseline")
    base = {"accuracy": m(0.90)}
    ok = evaluate_gate(gate, {"accuracy": m(0.895)}, base)
    assert ok.status is GateStatus.PASS
    assert ok.limit == pytest.approx(0.891)
    assert ok.reason == "0.895 >= 0.891 (0.99 * baseline 0.9) holds"
    bad = evaluate_gate(gate, {"accuracy": m(0.85)}, base)
    assert bad.status is GateStatus.FAIL
    assert bad.reason == "0.85 >= 0.891 (0.99 * baseline 0.9) does not hold"


def test_relative_gate_baseline_star_number() -> None:
    gate = parse_gate("compiled_size_kb <= baseline * 1.1")
    res = evaluate_gate(gate, {"compiled_size_kb": m(105.0)}, {"compiled_size_kb": m(100.0)})
    assert res.status is GateStatus.PASS and res.limit == pytest.approx(110.0)


def test_missing_metric_in_candidate() -> None:
    res = evaluate_gate(parse_gate("accuracy >= 0.5"), {"f1": m(0.9)}, None)
    assert res.status is GateStatus.MISSING
    assert res.reason == "no 'accuracy' in the candidate's results"
    assert res.value is None


def test_relative_gate_without_baseline_is_missing() -> None:
    gate = parse_gate("accuracy >= baseline")
    for baseline in (None, {"f1": m(0.5)}):
        res = evaluate_gate(gate, {"accuracy": m(0.9)}, baseline)
        assert res.status is GateStatus.MISSING
        assert res.reason == (
            "relative gate needs a baseline value for 'accuracy'; the baseline has none"
        )


def test_host_emulator_timing_is_not_applicable() -> None:
    gate = parse_gate("inference_time_ms <= 50")
    res = evaluate_gate(gate, {"inference_time_ms": m(10.0, Source.HOST_EMULATOR)}, None)
    assert res.status is GateStatus.NOT_APPLICABLE
    assert res.reason == (
        "measured on host-emulator (host timing, not device); "
        "set allow_host_timing: true to gate on it"
    )
    assert res.source is Source.HOST_EMULATOR
    # Memory is a timing-kind metric too.
    mem = evaluate_gate(
        parse_gate("peak_memory_mb <= 1"), {"peak_memory_mb": m(5.0, Source.HOST_EMULATOR)}, None
    )
    assert mem.status is GateStatus.NOT_APPLICABLE
    # Non-timing metrics from the emulator are gated normally.
    acc = evaluate_gate(
        parse_gate("accuracy >= 0.5"), {"accuracy": m(0.9, Source.HOST_EMULATOR)}, None
    )
    assert acc.status is GateStatus.PASS


def test_host_emulator_timing_opt_in() -> None:
    gate = parse_gate("inference_time_ms <= 50", allow_host_timing=True)
    ok = evaluate_gate(gate, {"inference_time_ms": m(10.0, Source.HOST_EMULATOR)}, None)
    assert ok.status is GateStatus.PASS
    bad = evaluate_gate(gate, {"inference_time_ms": m(60.0, Source.HOST_EMULATOR)}, None)
    assert bad.status is GateStatus.FAIL


def test_device_timing_is_gated() -> None:
    gate = parse_gate("inference_time_ms <= 50")
    res = evaluate_gate(gate, {"inference_time_ms": m(60.0, Source.DEVICE)}, None)
    assert res.status is GateStatus.FAIL


def test_relative_timing_sources_differ() -> None:
    gate = parse_gate("inference_time_ms <= 1.1 * baseline", allow_host_timing=True)
    res = evaluate_gate(
        gate,
        {"inference_time_ms": m(10.0, Source.HOST_EMULATOR)},
        {"inference_time_ms": m(9.0, Source.HOST_CPU)},
    )
    assert res.status is GateStatus.NOT_APPLICABLE
    assert res.reason.startswith("sources differ: host-cpu vs host-emulator")
    same = evaluate_gate(
        gate,
        {"inference_time_ms": m(10.0, Source.DEVICE)},
        {"inference_time_ms": m(9.5, Source.DEVICE)},
    )
    assert same.status is GateStatus.PASS
    # Sizes are not timings: different sources are fine.
    size = evaluate_gate(
        parse_gate("model_size_kb <= baseline"),
        {"model_size_kb": m(10.0, Source.HOST_EMULATOR)},
        {"model_size_kb": m(40.0, Source.HOST_CPU)},
    )
    assert size.status is GateStatus.PASS


def test_nan_fails() -> None:
    res = evaluate_gate(parse_gate("accuracy >= 0.5"), {"accuracy": m(float("nan"))}, None)
    assert res.status is GateStatus.FAIL


def test_verdict() -> None:
    gates = [
        parse_gate("accuracy >= 0.5"),
        parse_gate("inference_time_ms <= 50"),
    ]
    candidate = {"accuracy": m(0.9), "inference_time_ms": m(99.0, Source.HOST_EMULATOR)}
    results = evaluate_gates(gates, candidate, None)
    assert [r.status for r in results] == [GateStatus.PASS, GateStatus.NOT_APPLICABLE]
    assert verdict(results) is True
    assert verdict(evaluate_gates([parse_gate("f1 >= 0.5")], candidate, None)) is False
    assert verdict(evaluate_gates([parse_gate("accuracy >= 0.95")], candidate, None)) is False
    assert verdict([]) is True


def test_gate_is_frozen() -> None:
    gate = Gate("accuracy >= 1", "accuracy", ">=", 1.0, False)
    with pytest.raises(AttributeError):
        gate.threshold = 2.0  # type: ignore[misc]
