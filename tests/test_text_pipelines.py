"""Integration: the text pipelines (MiniLM intents, TinyLM) end to end on tiny versions,
on the QNN HTP emulator and on ONNX Runtime CPU, sharing one home (so one quantization)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgegate.metrics import Source
from edgegate.run.pipeline import RunOptions, run_pipeline
from edgegate.packs.scorers import get_scorer

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "tests" / "fixtures" / "pipelines"

pytestmark = pytest.mark.slow


def _options(tmp: Path, device: str | None = None) -> RunOptions:
    kw = {"evidence": "never"} if "evidence" in RunOptions.__dataclass_fields__ else {}
    return RunOptions(device=device, db_url=f"sqlite:///{tmp / 'eg.db'}", home=tmp / "home", **kw)


def _runs(tmp: Path, name: str, monkeypatch: pytest.MonkeyPatch):
    # TinyLM trains its checkpoint under $EDGEGATE_HOME: keep it in the test's directory.
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp / "home"))
    emulated = run_pipeline(PIPELINES / f"{name}.yaml", _options(tmp))
    cpu = run_pipeline(PIPELINES / f"{name}.yaml", _options(tmp, device="cpu"))
    return emulated, cpu


@pytest.fixture(scope="module")
def intent_runs(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        yield _runs(tmp_path_factory.mktemp("intents"), "robot_intents_mini", mp)


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        yield _runs(tmp_path_factory.mktemp("lm"), "lm_tiny_mini", mp)


def _per_sample(result, scorer: str) -> list[dict]:
    art = next(a for a in result.candidate.artifacts if a["kind"] == "per_sample_scores")
    stored = json.loads(Path(art["path"]).read_text())
    return stored[scorer] if isinstance(stored, dict) else stored[0]


def _check_placement(emulated, cpu) -> None:
    e, c = emulated.candidate.metrics, cpu.candidate.metrics
    assert e["inference_time_ms"].source is Source.HOST_EMULATOR
    assert emulated.baseline.metrics["inference_time_ms"].source is Source.HOST_CPU
    assert e["npu_fraction"].value == 1.0 and e["cpu_nodes"].value == 0  # no CPU fallback
    assert c["inference_time_ms"].source is Source.HOST_CPU and c["npu_nodes"].value == 0
    # one quantization for both devices (explicit AIMET config): same QDQ graph
    qdq = [next(a["sha256"] for a in r.candidate.artifacts if a["kind"] == "qdq_onnx") for r in (emulated, cpu)]
    assert qdq[0] == qdq[1]


def test_intent_pipeline_metrics_and_sources(intent_runs) -> None:
    emulated, cpu = intent_runs
    _check_placement(emulated, cpu)
    for result in (emulated, cpu):
        base, cand = result.baseline.metrics, result.candidate.metrics
        assert {"accuracy", "macro_f1"} <= set(base) and "cosine_agreement" not in base
        for name in ("accuracy", "macro_f1", "cosine_agreement"):
            assert cand[name].source is Source.COMPUTED and 0.0 <= cand[name].value <= 1.0
        assert cand["cosine_agreement"].value > 0.9  # W8A16 keeps the embeddings
        assert result.pack["samples"] == 4
        records = _per_sample(result, "intent")
        again = get_scorer("intent").aggregate(records)  # the stored records give the metrics back
        assert len(records) == 4 and {"accuracy", "macro_f1", "cosine_agreement"} <= set(again)
        assert all(again[k] == cand[k].value for k in again if k in cand)


def test_language_model_pipeline_metrics_and_sources(lm_runs) -> None:
    emulated, cpu = lm_runs
    _check_placement(emulated, cpu)
    for result in (emulated, cpu):
        base, cand = result.baseline.metrics, result.candidate.metrics
        for m in (base, cand):
            assert {"loss", "perplexity", "next_token_accuracy"} <= set(m)
            assert m["perplexity"].source is Source.COMPUTED
            assert m["perplexity"].value == pytest.approx(math.exp(m["loss"].value))
        assert cand["perplexity"].value < 1.1 * base["perplexity"].value
        records = _per_sample(result, "language-model")
        assert get_scorer("language-model").aggregate(records)["loss"] == cand["loss"].value
