"""The adversarial search is budgeted in seeds and steps, not wall time (issue 15, section 5).

A search bounded by wall time searched 8 of 32 seeds on a loaded machine and 23 on a quiet
one, and the gate on its disagreement rate passed on one and failed on the other. Now the
same inputs give the same result on any machine; a time cap may stop the search, and then
its rates are not reported and a gate on them is n/a with the reason, never a pass or a fail
computed from a smaller search. A tiny model and adapter keep this test fast.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from edgegate.gates import GateStatus, evaluate_gates, parse_gate
from edgegate.run.adversarial import AdversarialResult, AdversarialSettings, search
from edgegate.run.checks import CheckOutcome, adversarial_metrics, gates_not_applicable

GATES = [parse_gate("adversarial_disagreement_rate <= 0.5"), parse_gate("adversarial_disagreement_rate <= 0.01"),
         parse_gate("int8_robustness >= 0.5")]


class Tiny(torch.nn.Module):
    """Conv -> ReLU -> mean pool -> 3 class logits: enough for margins and neuron coverage."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(x / 255.0)).mean(dim=(2, 3)))


class TinyAdapter:
    """A SearchableAdapter: the class with the top logit; the margin between the top two."""

    def predict(self, image: np.ndarray, run: Any) -> Mapping[str, Any]:
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        (logits,) = run("g", {"x": x})
        return {"label": int(np.argmax(logits))}

    def decision_margin(self, x: torch.Tensor, modules: Mapping[str, Any]) -> torch.Tensor:
        top2 = modules["g"](x).topk(2, dim=1).values
        return (top2[:, 0] - top2[:, 1]).sum()

    def disagree(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        return a["label"] != b["label"]


@dataclass
class Seed:
    id: str
    image: np.ndarray

    def load_image(self) -> np.ndarray:
        return self.image


MODEL = Tiny().eval()
BIAS = 0.01  # disagreement 0.25 on these seeds: one gate below passes, one fails


def fp32_run(graph: str, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        return [MODEL(torch.from_numpy(feeds["x"])).numpy()]


def int8_run(graph: str, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """A "quantized" model: inputs rounded, and a small error on one logit, so decisions
    with a small margin flip (which the gradient steps look for)."""
    x = np.round(feeds["x"] / 8.0) * 8.0
    (logits,) = fp32_run(graph, {"x": x.astype(np.float32)})
    return [logits + np.array([[0.0, BIAS, 0.0]], np.float32)]


def slow_int8_run(graph: str, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    time.sleep(0.01)  # a loaded machine
    return int8_run(graph, feeds)


SEEDS = [Seed(f"s{i}", np.random.default_rng(i).integers(0, 256, (12, 12, 3), dtype=np.uint8)) for i in range(8)]


def _search(time_budget_s: float | None, int8: Any = int8_run) -> AdversarialResult:
    settings = AdversarialSettings(seeds=len(SEEDS), steps=3, epsilon=16.0, step_size=6.0, time_budget_s=time_budget_s)
    return search(TinyAdapter(), SEEDS, {"g": MODEL}, fp32_run, int8, settings)


def _comparable(res: AdversarialResult) -> dict[str, Any]:
    out = res.summary()
    out.pop("elapsed_s")
    out["findings"] = [(f.seed_id, f.kind, f.detail, f.image.tobytes()) for f in res.findings]
    return out


def _gates(res: AdversarialResult) -> list[tuple[GateStatus, str]]:
    metrics, not_applicable = adversarial_metrics(res)
    results = evaluate_gates(GATES, metrics, None)
    results = gates_not_applicable(results, [CheckOutcome(metrics, {}, None, not_applicable), None])
    return [(r.status, r.reason) for r in results]


@pytest.fixture(scope="module")
def whole() -> AdversarialResult:
    return _search(None)


def test_the_search_is_deterministic_and_complete_without_a_cap(whole: AdversarialResult) -> None:
    assert whole.stopped is None and whole.seeds_tried == whole.seeds_planned == len(SEEDS)
    assert whole.inputs_tried == len(SEEDS) * (1 + 3 + 3)  # clean + 3 gradient steps + 3 transforms
    assert 0 < whole.disagreement_rate < 1  # the tiny pair does disagree, on some seeds only
    assert _comparable(_search(None)) == _comparable(whole)
    # a cap the search does not reach changes nothing
    assert _comparable(_search(3600.0)) == _comparable(whole)


def test_a_search_stopped_by_its_time_cap_reports_no_rates_and_its_gates_are_not_applicable(
    whole: AdversarialResult,
) -> None:
    stopped = _search(1e-9)
    assert stopped.stopped == (f"search stopped by time_budget_s (1e-09 s) after 0 of {len(SEEDS)} seeds; its rates "
                               "describe a smaller search than the one budgeted")
    summary = stopped.summary()
    assert summary["complete"] is False and summary["not_applicable"] == stopped.stopped
    assert adversarial_metrics(stopped) == ({}, {m: stopped.stopped for m in
                                                 ("adversarial_disagreement_rate", "adversarial_coverage",
                                                  "fp32_robustness", "int8_robustness")})
    assert _gates(stopped) == [(GateStatus.NOT_APPLICABLE, stopped.stopped)] * len(GATES)


@pytest.mark.parametrize("budget", [1e-9, 0.3, 2.0, None])
def test_a_tiny_time_budget_never_gives_another_verdict(whole: AdversarialResult, budget: float | None) -> None:
    """On a loaded machine (a slow INT8 side) the cap cuts the search at some seed: every gate
    is then n/a, or, when the search finished, exactly what the whole search gives."""
    res = _search(budget, slow_int8_run)
    reference = _gates(whole)
    got = _gates(res)
    if res.stopped is None:
        assert _comparable(res) == _comparable(whole) and got == reference
    else:
        assert res.seeds_tried < len(SEEDS)
        assert all(status is GateStatus.NOT_APPLICABLE for status, _ in got)
    statuses = {s for s, _ in reference}
    assert GateStatus.PASS in statuses and GateStatus.FAIL in statuses  # the gates do judge the whole search
