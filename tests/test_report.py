"""Reports: the JSON document from a PipelineResult, its table rows, terminal and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgegate.gates import Gate, GateResult, GateStatus
from edgegate.metrics import Measurement, Source
from edgegate.results import PipelineResult, VariantResult
from edgegate.report.run_report import (
    REPORT_SCHEMA,
    build_report,
    render_markdown,
    render_terminal,
    table_rows,
    write_json_report,
)
from edgegate.stats import summarize_latency
from edgegate.targets.base import CompiledGraph, Variant

CPU, EMU, COMP = Source.HOST_CPU, Source.HOST_EMULATOR, Source.COMPUTED
DIFF = "n/a (sources differ)"
CPU_TO_EMU = "host-cpu → host-emulator"


def _m(value: float, source: Source, unit: str) -> Measurement:
    return Measurement(value, source, unit)


def _baseline() -> VariantResult:
    return VariantResult(
        variant=Variant.FP32,
        run_id=1,
        target={"name": "host-cpu", "timing_source": "host-cpu"},
        metrics={
            "inference_time_ms": _m(20.0, CPU, "ms"),
            "latency_min_ms": _m(18.0, CPU, "ms"),
            "load_time_ms": _m(5.0, CPU, "ms"),
            "peak_memory_mb": _m(40.0, CPU, "MB"),
            "model_size_kb": _m(2000.0, COMP, "KB"),
            "map50": _m(0.9, COMP, "ratio"),
            "recall": _m(0.8, COMP, "ratio"),
            "npu_fraction": _m(0.0, COMP, "ratio"),
        },
        latency={"pnet": summarize_latency([9.0, 10.0, 11.0])},
        memory_method="rss high-water mark",
        calls_per_image={"pnet": 1.0},
        from_golden=True,
    )


def _candidate(timing: Source = EMU) -> VariantResult:
    art = Path("/cache/compile/pnet.onnx")
    return VariantResult(
        variant=Variant.INT8,
        run_id=2,
        target={"name": "htp-sim", "timing_source": timing.value},
        metrics={
            "inference_time_ms": _m(15.0, timing, "ms"),
            "latency_min_ms": _m(11.0, timing, "ms"),
            "load_time_ms": _m(6.0, timing, "ms"),
            "peak_memory_mb": _m(30.0, timing, "MB"),
            "model_size_kb": _m(500.0, COMP, "KB"),
            "compiled_size_kb": _m(350.0, COMP, "KB"),
            "map50": _m(0.88, COMP, "ratio"),
            "recall": _m(0.8, COMP, "ratio"),
            "npu_fraction": _m(1.0, COMP, "ratio"),
        },
        latency={"pnet": summarize_latency([7.0, 8.0, 9.0])},
        compiled={
            "pnet": CompiledGraph("pnet", art, (art,), npu_nodes=10, cpu_nodes=0),
            "rnet": CompiledGraph("rnet", art, (art,), npu_nodes=6, cpu_nodes=2,
                                  cpu_ops=("Softmax(prob)", "Flatten(f)"), details={"cached": True}),
        },
        artifacts=[{"kind": "onnx-int8", "graph": "pnet", "path": str(art), "sha256": "ab" * 32}],
        memory_method="rss high-water mark",
        calls_per_image={"pnet": 1.0},
    )


def _gates() -> list[GateResult]:
    def gate(expr: str, metric: str, op: str, threshold: float, relative: bool = False) -> Gate:
        return Gate(expr=expr, metric=metric, op=op, threshold=threshold, relative=relative)

    return [
        GateResult(gate("map50 >= 0.9 * baseline", "map50", ">=", 0.9, True), GateStatus.PASS, 0.88, 0.81, COMP,
                   "0.88 >= 0.81 (0.9 * baseline 0.9) holds"),
        GateResult(gate("recall >= 0.95", "recall", ">=", 0.95), GateStatus.FAIL, 0.8, 0.95, COMP,
                   "0.8 >= 0.95 does not hold"),
        GateResult(gate("inference_time_ms <= 50", "inference_time_ms", "<=", 50), GateStatus.NOT_APPLICABLE,
                   15.0, None, EMU, "measured on host-emulator"),
        GateResult(gate("accuracy >= 0.99", "accuracy", ">=", 0.99), GateStatus.MISSING, None, None, None,
                   "no 'accuracy' in the candidate's results"),
    ]


def _result(candidate: VariantResult, *, passed: bool = False, gates: list[GateResult] | None = None) -> PipelineResult:
    return PipelineResult(
        pipeline="person_detect",
        device={"name": "htp-sim", "kind": "qnn-emulator"},
        pack={"name": "person_detect_mini", "version": "1.0.0", "samples": 6, "digest": "sha256:415e"},
        config_digest="sha256:cfg",
        baseline=_baseline(),
        candidate=candidate,
        golden_run_id=1,
        gates=_gates() if gates is None else gates,
        passed=passed,
        notes=["first run: baseline stored as golden"],
    )


@pytest.fixture
def cross() -> dict:
    """Baseline timed on host-cpu, candidate on the host emulator."""
    return build_report(_result(_candidate(EMU)))


@pytest.fixture
def same() -> dict:
    """Both variants timed on host-cpu."""
    return build_report(_result(_candidate(CPU), passed=True, gates=[]))


# ----------------------------------------------------------------------------- JSON


def test_report_header_and_variants(cross: dict) -> None:
    assert cross["schema"] == REPORT_SCHEMA
    assert (cross["pipeline"], cross["golden_run_id"], cross["config_digest"]) == ("person_detect", 1, "sha256:cfg")
    assert cross["notes"] == ["first run: baseline stored as golden"]
    b, c = cross["baseline"], cross["candidate"]
    assert (b["run_id"], b["variant"], b["from_golden"]) == (1, "fp32", True)
    assert (c["run_id"], c["variant"], c["from_golden"]) == (2, "int8", False)
    assert c["metrics"]["inference_time_ms"] == {"value": 15.0, "unit": "ms", "source": "host-emulator"}
    assert b["metrics"]["inference_time_ms"] == {"value": 20.0, "unit": "ms", "source": "host-cpu"}
    assert c["latency"]["pnet"]["median"] == 8.0
    assert c["latency"]["pnet"]["n"] == 3.0
    assert c["placement"] == {
        "pnet": {"npu_nodes": 10, "cpu_nodes": 0, "cpu_ops": [], "cached": False},
        "rnet": {"npu_nodes": 6, "cpu_nodes": 2, "cpu_ops": ["Softmax(prob)", "Flatten(f)"], "cached": True},
    }
    assert b["placement"] == {}
    # The whole document is plain JSON.
    assert json.loads(json.dumps(cross)) == cross


def test_comparison_marks_different_sources(cross: dict) -> None:
    rows = {r["metric"]: r for r in cross["comparison"]}
    assert rows["inference_time_ms"] == {
        "metric": "inference_time_ms", "delta": -5.0, "relative": -0.25, "comparable": False,
        "note": "sources differ: host-cpu vs host-emulator",
    }
    assert rows["model_size_kb"] == {
        "metric": "model_size_kb", "delta": -1500.0, "relative": -0.75, "comparable": True,
    }
    assert rows["npu_fraction"] == {
        "metric": "npu_fraction", "delta": 1.0, "relative": None, "comparable": True,
    }
    assert rows["compiled_size_kb"] == {"metric": "compiled_size_kb", "status": "missing"}


def test_verdict_with_different_sources(cross: dict) -> None:
    v = cross["verdict"]
    assert v["passed"] is False
    assert v["speedup"] == {"value": None, "note": "n/a: host-cpu vs host-emulator timings"}
    assert v["memory_reduction"] == {"value": None, "note": "n/a: host-cpu vs host-emulator timings"}
    assert v["size_reduction"] == {"value": 4.0, "source": "computed"}


def test_verdict_with_same_sources(same: dict) -> None:
    v = same["verdict"]
    assert v["passed"] is True
    assert v["speedup"] == {"value": pytest.approx(20.0 / 15.0), "source": "host-cpu"}
    assert v["memory_reduction"] == {"value": pytest.approx(40.0 / 30.0), "source": "host-cpu"}
    assert v["size_reduction"] == {"value": 4.0, "source": "computed"}


def test_gates_in_report(cross: dict) -> None:
    assert cross["gates"] == [
        {"expr": "map50 >= 0.9 * baseline", "metric": "map50", "status": "pass", "value": 0.88, "limit": 0.81,
         "source": "computed", "reason": "0.88 >= 0.81 (0.9 * baseline 0.9) holds"},
        {"expr": "recall >= 0.95", "metric": "recall", "status": "fail", "value": 0.8, "limit": 0.95,
         "source": "computed", "reason": "0.8 >= 0.95 does not hold"},
        {"expr": "inference_time_ms <= 50", "metric": "inference_time_ms", "status": "n/a", "value": 15.0,
         "limit": None, "source": "host-emulator", "reason": "measured on host-emulator"},
        {"expr": "accuracy >= 0.99", "metric": "accuracy", "status": "missing", "value": None, "limit": None,
         "source": None, "reason": "no 'accuracy' in the candidate's results"},
    ]


# ----------------------------------------------------------------------------- table rows


def test_table_rows_with_different_timing_sources(cross: dict) -> None:
    assert table_rows(cross) == [
        ("Latency (cascade, median)", "20.00 ms", "15.00 ms", DIFF, CPU_TO_EMU),
        ("Latency (cascade, min)", "18.00 ms", "11.00 ms", DIFF, CPU_TO_EMU),
        ("Load time", "5.00 ms", "6.00 ms", DIFF, CPU_TO_EMU),
        ("Peak memory (inference)", "40.00 MB", "30.00 MB", DIFF, CPU_TO_EMU),
        ("Model size (weights)", "2,000.0 KB", "500.0 KB", "-1,500.00 KB (-75%)", "computed"),
        ("Compiled artifact size", "—", "350.0 KB", "—", "computed"),  # one-sided: its only source
        ("mAP@0.5", "0.900", "0.880", "-0.020", "computed"),
        ("Recall", "0.800", "0.800", "+0.000", "computed"),
        ("NPU placement", "0%", "100%", "+100 pp", "computed"),
    ]


def test_table_rows_with_same_timing_source(same: dict) -> None:
    rows = {r[0]: r for r in table_rows(same)}
    assert rows["Latency (cascade, median)"] == (
        "Latency (cascade, median)", "20.00 ms", "15.00 ms", "-5.00 ms (-25%)", "host-cpu"
    )
    assert rows["Load time"] == ("Load time", "5.00 ms", "6.00 ms", "+1.00 ms (+20%)", "host-cpu")
    assert rows["Peak memory (inference)"] == (
        "Peak memory (inference)", "40.00 MB", "30.00 MB", "-10.00 MB (-25%)", "host-cpu"
    )


# ----------------------------------------------------------------------------- renderers


def test_render_terminal_gate_and_verdict_lines(cross: dict) -> None:
    lines = render_terminal(cross).splitlines()
    gates_at = lines.index("Gates:")
    assert lines[gates_at + 1 : gates_at + 5] == [
        "  [PASS] map50 >= 0.9 * baseline (value 0.88, limit 0.81): 0.88 >= 0.81 (0.9 * baseline 0.9) holds",
        "  [FAIL] recall >= 0.95 (value 0.8, limit 0.95): 0.8 >= 0.95 does not hold",
        "  [N/A ] inference_time_ms <= 50 (value 15): measured on host-emulator",
        "  [MISS] accuracy >= 0.99: no 'accuracy' in the candidate's results",
    ]
    assert lines[gates_at + 5 :] == [
        "",
        "Final Verdict: FAIL",
        "  Speedup: n/a: host-cpu vs host-emulator timings",
        "  Memory reduction: n/a: host-cpu vs host-emulator timings",
        "  Size reduction: 4.00x (computed)",
        "Note: first run: baseline stored as golden",
    ]
    assert "NPU placement: pnet: 10/10 nodes on NPU; rnet: 6/8 nodes on NPU" in lines
    assert (
        "Note: host-emulator timings are the QNN HTP emulator running on this host's CPU, not device latency."
        in lines
    )


def test_render_terminal_table(cross: dict) -> None:
    lines = [ln.rstrip() for ln in render_terminal(cross).splitlines()]
    assert lines[:2] == [
        "EdgeGate · person_detect on htp-sim (qnn-emulator) · PromptPack person_detect_mini 1.0.0 (6 samples)",
        "Baseline: run 1, golden on host-cpu; candidate: run 2",
    ]
    cells = [
        tuple(c.strip() for c in ln.strip("│").split("│")) for ln in lines if ln.startswith("│")
    ]
    assert cells == table_rows(cross)


def test_render_terminal_same_source_speedup_and_no_gates(same: dict) -> None:
    lines = render_terminal(same).splitlines()
    gates_at = lines.index("Gates:")
    assert lines[gates_at + 1 : gates_at + 7] == [
        "  (none declared)",
        "",
        "Final Verdict: PASS",
        "  Speedup: 1.33x (host-cpu)",
        "  Memory reduction: 1.33x (host-cpu)",
        "  Size reduction: 4.00x (computed)",
    ]
    assert not any(ln.startswith("Note: host-emulator timings") for ln in lines)


def test_render_markdown(cross: dict) -> None:
    md = render_markdown(cross)
    assert md.endswith("\n")
    lines = md.splitlines()
    assert lines[:4] == [
        "### EdgeGate: person_detect on htp-sim",
        "",
        "| Metric | Baseline (FP32) run 1 | Optimized (INT8) run 2 | Delta | Source |",
        "|---|---:|---:|---:|---|",
    ]
    assert lines[4:13] == [
        f"| Latency (cascade, median) | 20.00 ms | 15.00 ms | {DIFF} | {CPU_TO_EMU} |",
        f"| Latency (cascade, min) | 18.00 ms | 11.00 ms | {DIFF} | {CPU_TO_EMU} |",
        f"| Load time | 5.00 ms | 6.00 ms | {DIFF} | {CPU_TO_EMU} |",
        f"| Peak memory (inference) | 40.00 MB | 30.00 MB | {DIFF} | {CPU_TO_EMU} |",
        "| Model size (weights) | 2,000.0 KB | 500.0 KB | -1,500.00 KB (-75%) | computed |",
        "| Compiled artifact size | — | 350.0 KB | — | computed |",
        "| mAP@0.5 | 0.900 | 0.880 | -0.020 | computed |",
        "| Recall | 0.800 | 0.800 | +0.000 | computed |",
        "| NPU placement | 0% | 100% | +100 pp | computed |",
    ]
    assert lines[13:] == [
        "",
        "| Gate | Status | Value | Limit |",
        "|---|---|---:|---:|",
        "| `map50 >= 0.9 * baseline` | pass | 0.88 | 0.81 |",
        "| `recall >= 0.95` | fail | 0.8 | 0.95 |",
        "| `inference_time_ms <= 50` | n/a | 15 |  |",
        "| `accuracy >= 0.99` | missing |  |  |",
        "",
        "**Final Verdict: FAIL**",
        "  Speedup: n/a: host-cpu vs host-emulator timings",
        "  Memory reduction: n/a: host-cpu vs host-emulator timings",
        "  Size reduction: 4.00x (computed)",
    ]


# ----------------------------------------------------------------------------- writing


def test_write_json_report_is_atomic(cross: dict, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "person_detect-2.json"
    write_json_report(cross, out)
    assert json.loads(out.read_text()) == cross
    assert out.read_text().endswith("}\n")
    assert sorted(p.name for p in out.parent.iterdir()) == ["person_detect-2.json"]


def test_write_json_report_replaces_existing(cross: dict, same: dict, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    out.write_text("old, not json")
    write_json_report(cross, out)
    write_json_report(same, out)
    assert json.loads(out.read_text()) == same
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


# ----------------------------------------------------------------------------- toolchain, reproducibility


def _with_toolchains(base: dict | None, cand: dict | None) -> dict:
    import dataclasses

    b = _baseline()
    b = dataclasses.replace(b, toolchain=base)
    c = dataclasses.replace(_candidate(EMU), toolchain=cand)
    return build_report(dataclasses.replace(_result(c), baseline=b))


def test_toolchain_per_variant_and_a_line_when_it_differs() -> None:
    qnn = {"onnxruntime": "1.32.0", "onnxruntime-qnn": "2.7.0"}
    report = _with_toolchains(qnn, {**qnn, "onnxruntime-qnn": "2.8.0"})
    assert report["candidate"]["toolchain"] == {**qnn, "onnxruntime-qnn": "2.8.0"}
    assert report["baseline"]["toolchain"] == qnn
    assert report["candidate"]["target"] == {"name": "htp-sim", "timing_source": "host-emulator"}  # as described
    lines = render_terminal(report).splitlines()
    line = "Toolchain differs: onnxruntime-qnn 2.7.0 (baseline) vs 2.8.0 (candidate)"
    assert lines[lines.index("Gates:") - 2] == line
    # a CPU baseline and an emulator candidate: different targets, not a toolchain change
    same = _with_toolchains({"onnxruntime": "1.32.0"}, qnn)
    assert not any(ln.startswith("Toolchain differs") for ln in render_terminal(same).splitlines())
    # a golden stored before toolchains were recorded
    old = _with_toolchains(None, qnn)
    assert old["baseline"]["toolchain"] is None
    assert not any(ln.startswith("Toolchain differs") for ln in render_terminal(old).splitlines())


def test_reproducibility_not_applicable_is_never_a_pass() -> None:
    import dataclasses

    checked = [{"graph": "pnet", "artifact": "encodings", "equal": True}, {"graph": "pnet", "artifact": "qdq_onnx", "equal": True}]
    why = "QAIRT 'latest' is resolved by AI Hub for each job, so compiled artifacts are not compared; pin it"
    result = dataclasses.replace(_result(_candidate(EMU)), reproducibility={
        "reproducible": None, "not_applicable": why, "first_difference": None, "checked": checked})
    lines = render_terminal(build_report(result)).splitlines()
    assert f"Reproducibility: n/a: {why} (quantization byte-identical: 2 artifact comparisons across this run " \
           "and 2 fresh processes)" in lines
    assert not any("byte-identical (" in ln for ln in lines)
