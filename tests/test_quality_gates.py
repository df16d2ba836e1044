"""EdgePlug-style gates: size, per-class precision, adversarial differential search."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from edgegate.run.adversarial import AdversarialSettings, search, write_failure_pack
from edgegate.gates import GateStatus, evaluate_gates, parse_gate
from edgegate.metrics import Measurement, Source
from edgegate.run.pipeline import RunOptions, run_pipeline
from edgegate.packs.promptpack import load_promptpack
from edgegate.packs.scorers import per_class_prf
from edgegate.zoo import mtcnn

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"
MINI_PACK = ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini"


def _nets() -> dict:
    return {"pnet": mtcnn.pnet(), "rnet": mtcnn.rnet(), "onet": mtcnn.onet()}


@pytest.fixture(scope="module")
def seeds():
    return load_promptpack(MINI_PACK).samples("eval")


def test_identical_pair_never_disagrees(seeds) -> None:
    adapter = mtcnn.MTCNNAdapter(rnet_batch=16, onet_batch=4)
    a, b = _nets(), _nets()
    res = search(adapter, seeds, a, mtcnn.torch_runner(a), mtcnn.torch_runner(b), AdversarialSettings(seeds=6))
    assert res.seeds_tried == 6 and res.inputs_tried > 6
    assert res.disagreement_rate == 0.0 and res.findings == []
    assert res.fp32_robustness == res.int8_robustness  # the same function, the same flips
    assert 0.0 < res.coverage <= 1.0


def test_fragile_candidate_is_caught_with_findings(seeds, tmp_path: Path) -> None:
    adapter = mtcnn.MTCNNAdapter(rnet_batch=16, onet_batch=4)
    fp32, fragile = _nets(), _nets()
    # A candidate made fragile on purpose: O-Net's face logit sits near its threshold.
    fragile["onet"].dense6_1.bias.data[1] -= 2.5
    settings = AdversarialSettings(seeds=6, seed=3)
    res = search(adapter, seeds, fp32, mtcnn.torch_runner(fp32), mtcnn.torch_runner(fragile), settings)
    assert res.disagreement_rate > 0.3
    assert all(f.kind in ("clean", "gradient", "brightness", "blur", "occlusion") for f in res.findings)
    assert all(f.linf <= settings.epsilon for f in res.findings if f.kind == "gradient")
    again = search(adapter, seeds, fp32, mtcnn.torch_runner(fp32), mtcnn.torch_runner(fragile), settings)
    assert [(f.seed_id, f.kind) for f in again.findings] == [(f.seed_id, f.kind) for f in res.findings]  # seeded

    pack = write_failure_pack(res, tmp_path / "adv", name="fragile", source_pack="sha256:x")
    manifest = yaml.safe_load((pack / "manifest.yaml").read_text())
    assert manifest["summary"]["disagreement_rate"] == res.disagreement_rate
    pngs = sorted(p for p in pack.rglob("*.png"))
    assert len(pngs) == len(res.findings)
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((pack / rel).read_bytes()).hexdigest() == digest


def test_time_budget_bounds_the_search(seeds) -> None:
    adapter = mtcnn.MTCNNAdapter(rnet_batch=16, onet_batch=4)
    a = _nets()
    res = search(adapter, seeds, a, mtcnn.torch_runner(a), mtcnn.torch_runner(a),
                 AdversarialSettings(seeds=6, time_budget_s=1e-6))
    assert res.budget_exhausted and res.seeds_tried <= 1


def test_per_class_precision_and_gates() -> None:
    m = per_class_prf(["stop", "stop", "go", "go"], ["stop", "go", "go", "go"])
    assert m["precision[stop]"] == 1.0 and m["recall[stop]"] == 0.5
    assert m["precision[go]"] == pytest.approx(2 / 3) and m["recall[go]"] == 1.0
    measured = {k: Measurement(v, Source.COMPUTED, "ratio") for k, v in m.items()}
    res = evaluate_gates([parse_gate("precision[stop] >= 0.98"), parse_gate("precision[go] >= 0.98")], measured, None)
    assert [r.status for r in res] == [GateStatus.PASS, GateStatus.FAIL]


@pytest.mark.slow
def test_pipeline_records_size_and_adversarial_metrics(tmp_path: Path) -> None:
    result = run_pipeline(MINI, RunOptions(device="cpu", db_url=f"sqlite:///{tmp_path / 'q.db'}", home=tmp_path / "h"))
    c = result.candidate.metrics
    assert c["model_size_mb"].value == pytest.approx(c["model_size_kb"].value / 1024)
    assert c["compiled_size_mb"].value == pytest.approx(c["compiled_size_kb"].value / 1024)
    for name in ("adversarial_disagreement_rate", "adversarial_coverage", "fp32_robustness", "int8_robustness"):
        assert 0.0 <= c[name].value <= 1.0 and c[name].source is Source.COMPUTED
    assert result.adversarial["seeds_tried"] == 6
    size = evaluate_gates([parse_gate("model_size_kb <= 16"), parse_gate("model_size_kb <= 1000")], c, None)
    assert [r.status for r in size] == [GateStatus.FAIL, GateStatus.PASS]  # 488 KB of INT8 MTCNN weights
