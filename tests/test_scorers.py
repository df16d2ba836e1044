from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgegate.packs import scorers
from edgegate.errors import UnknownNameError
from edgegate.packs.sample import Sample
from edgegate.packs.scorers import (
    DetectionScorer,
    ScoreResult,
    average_precision,
    get_scorer,
    iou_matrix,
    register_scorer,
    scorer_names,
)


def _sample(i: int, boxes: list[list[float]]) -> Sample:
    return Sample(
        id=f"s{i}",
        split="eval",
        image_path=Path(f"/nonexistent/s{i}.png"),
        target={"boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4)},
        sha256=f"{i:064x}",
    )


def _pred(boxes: list[list[float]], scores: list[float]) -> dict[str, np.ndarray]:
    return {"boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4), "scores": np.asarray(scores)}


def _score(gts: list[list[list[float]]], preds: list[dict[str, np.ndarray]], reference=None) -> ScoreResult:
    samples = [_sample(i, g) for i, g in enumerate(gts)]
    return get_scorer("detection").score(preds, samples, reference)


A = [0, 0, 10, 10]
B = [20, 0, 30, 10]
C = [40, 0, 50, 10]
FAR = [100, 100, 110, 110]


def test_iou_matrix_values() -> None:
    ious = iou_matrix(np.array([[0, 0, 10, 10], [5, 0, 15, 10]]), np.array([[0, 0, 10, 10], [0, 0, 10, 5], FAR]))
    expected = np.array([[1.0, 0.5, 0.0], [1 / 3, 25 / 125, 0.0]])
    np.testing.assert_allclose(ious, expected)
    assert iou_matrix(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


def test_perfect() -> None:
    r = _score([[A], [A, B]], [_pred([A], [0.9]), _pred([B, A], [0.8, 0.7])])
    assert r.metrics == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "map50": 1.0, "accuracy": 1.0}


def test_one_false_positive() -> None:
    low = _score([[A]], [_pred([A, FAR], [0.9, 0.3])])
    assert low.metrics["precision"] == 0.5
    assert low.metrics["recall"] == 1.0
    assert low.metrics["f1"] == pytest.approx(2 / 3)
    assert low.metrics["map50"] == 1.0  # the FP ranks below the only TP
    high = _score([[A]], [_pred([A, FAR], [0.3, 0.9])])
    assert high.metrics["map50"] == 0.5  # the TP only comes at precision 1/2
    assert high.per_sample[0] == {
        "id": "s0",
        "sha256": f"{0:064x}",
        "n_gt": 1,
        "n_pred": 2,
        "tp": 1,
        "fp": 1,
        "fn": 0,
        "correct": True,
        "max_score": 0.9,
        "scores": [0.9, 0.3],
        "is_tp": [False, True],
    }


def test_one_false_negative() -> None:
    r = _score([[A, B]], [_pred([A], [0.9])])
    assert (r.metrics["precision"], r.metrics["recall"], r.metrics["map50"]) == (1.0, 0.5, 0.5)
    assert r.metrics["f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(("height", "matched"), [(49, False), (50, True), (51, True)])
def test_iou_boundary(height: int, matched: bool) -> None:
    # IoU of [0,0,100,h] with [0,0,100,100] is exactly h/100.
    r = _score([[[0, 0, 100, 100]]], [_pred([[0, 0, 100, height]], [0.9])])
    expected = 1.0 if matched else 0.0
    assert (r.metrics["precision"], r.metrics["recall"], r.metrics["f1"]) == (expected,) * 3
    assert r.metrics["accuracy"] == 1.0  # presence is right either way


def test_each_gt_matched_at_most_once() -> None:
    r = _score([[A]], [_pred([A, [0, 0, 10, 9]], [0.9, 0.95])])
    assert (r.per_sample[0]["tp"], r.per_sample[0]["fp"]) == (1, 1)
    # The higher-scored duplicate (IoU 0.9) takes the GT; the exact box becomes the FP.
    assert r.metrics["map50"] == 1.0


def test_empty_images() -> None:
    nothing = _score([[], []], [_pred([], []), _pred([], [])])
    assert nothing.metrics == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "map50": 1.0, "accuracy": 1.0}
    missed = _score([[A], []], [_pred([], []), _pred([], [])])
    assert missed.metrics == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "map50": 0.0, "accuracy": 0.5}
    hallucinated = _score([[]], [_pred([A], [0.8])])
    assert hallucinated.metrics == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "map50": 0.0, "accuracy": 0.0}


def test_map50_hand_example() -> None:
    # Ranked over the split: .9 TP, .8 FP, .7 TP, .6 FP, .5 TP with 4 GT boxes.
    # Recall .25/.25/.5/.5/.75, precision 1/.5/.667/.5/.6; the envelope gives
    # AP = .25*1 + .25*(2/3) + .25*.6 = 17/30.
    r = _score(
        [[A, B, C], [A], []],
        [_pred([A, FAR, B], [0.9, 0.8, 0.5]), _pred([A, FAR], [0.7, 0.6]), _pred([], [])],
    )
    assert r.metrics["map50"] == pytest.approx(17 / 30)
    assert r.metrics["precision"] == pytest.approx(3 / 5)
    assert r.metrics["recall"] == pytest.approx(3 / 4)
    assert r.metrics["f1"] == pytest.approx(2 / 3)
    assert r.metrics["accuracy"] == 1.0
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 0, 1, 0, 1], bool), 4) == (
        pytest.approx(17 / 30)
    )


def test_baseline_agreement() -> None:
    gts = [[A, B], []]
    cand = [_pred([A], [0.9]), _pred([], [])]
    same = _score(gts, cand, reference=cand)
    assert same.metrics["baseline_agreement"] == 1.0
    ref = [_pred([A, B], [0.9, 0.8]), _pred([FAR], [0.7])]
    r = _score(gts, cand, reference=ref)
    # Candidate vs reference: 1 TP, 0 FP, 2 FN -> F1 = 2/(2+0+2) = 0.5.
    assert r.metrics["baseline_agreement"] == 0.5
    assert {k: r.per_sample[1][k] for k in ("n_ref", "ref_tp", "ref_fp", "ref_fn")} == {
        "n_ref": 1,
        "ref_tp": 0,
        "ref_fp": 0,
        "ref_fn": 1,
    }
    empty = _score([[], []], [_pred([], [])] * 2, reference=[_pred([], [])] * 2)
    assert empty.metrics["baseline_agreement"] == 1.0
    assert "baseline_agreement" not in _score(gts, cand).metrics


def test_per_sample_is_json_serialisable() -> None:
    r = _score([[A], []], [_pred([A], [np.float32(0.9)]), _pred([], [])], reference=[_pred([A], [1.0])] * 2)
    json.dumps(r.per_sample)
    assert r.per_sample[1]["max_score"] is None


def test_bad_predictions_are_rejected() -> None:
    with pytest.raises(ValueError, match="1 predictions for 2 samples"):
        _score([[A], [A]], [_pred([A], [0.9])])
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        _score([[A]], [{"boxes": np.zeros((1, 3)), "scores": np.zeros(1)}])
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        _score([[A]], [{"boxes": np.zeros((2, 4)), "scores": np.zeros(1)}])
    with pytest.raises(ValueError, match="no samples"):
        _score([], [])


def test_registry() -> None:
    assert "detection" in scorer_names()
    assert isinstance(get_scorer("detection"), DetectionScorer)
    with pytest.raises(ValueError, match="scorer 'detection' is already registered"):
        register_scorer(DetectionScorer())
    with pytest.raises(UnknownNameError) as info:
        get_scorer("detectoin")
    known = "classification, coco-detection, detection, intent, language-model, text-classification"
    assert str(info.value) == (
        f"unknown scorer 'detectoin' (did you mean 'detection' or 'coco-detection'?); known: {known}"
    )
    with pytest.raises(UnknownNameError) as info:
        get_scorer("bleu")
    assert str(info.value) == f"unknown scorer 'bleu'; known: {known}"


def test_register_new_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scorers, "_SCORERS", dict(scorers._SCORERS))

    class Dummy:
        name = "dummy"
        metrics = ("accuracy",)

        def score(self, predictions, samples, reference=None) -> ScoreResult:
            return ScoreResult(metrics={"accuracy": 1.0}, per_sample=[])

    register_scorer(Dummy())
    assert scorer_names() == [
        "classification", "coco-detection", "detection", "dummy", "intent", "language-model", "text-classification",
    ]
    assert get_scorer("dummy").score([], []).metrics == {"accuracy": 1.0}


# --- aggregate: score() metrics are aggregate(per_sample), on any subset ---------------------


def test_detection_aggregate_matches_score_and_subsets() -> None:
    gts = [[A, B, C], [A], []]
    preds = [_pred([A, FAR, B], [0.9, 0.8, 0.5]), _pred([A, FAR], [0.7, 0.6]), _pred([], [])]
    ref = [_pred([A, B], [0.9, 0.8]), _pred([A], [0.7]), _pred([FAR], [0.5])]
    r = _score(gts, preds, reference=ref)
    scorer = get_scorer("detection")
    assert scorer.aggregate(r.per_sample) == r.metrics
    assert scorer.aggregate(json.loads(json.dumps(r.per_sample))) == r.metrics  # as stored
    alone = _score(gts[1:], preds[1:], reference=ref[1:])
    assert scorer.aggregate(r.per_sample[1:]) == alone.metrics
    # A bootstrap resample may repeat a sample: its counts and detections count twice.
    twice = scorer.aggregate([r.per_sample[1], r.per_sample[1]])
    assert twice["precision"] == 0.5 and twice["map50"] == 1.0
    with pytest.raises(ValueError, match="no per-sample records"):
        scorer.aggregate([])


def test_detection_accepts_and_ignores_support() -> None:
    samples = [_sample(0, [A])]
    r = get_scorer("detection").score([_pred([A], [0.9])], samples, support=([_pred([A], [0.9])], samples))
    assert r.metrics["f1"] == 1.0


# --- intent ----------------------------------------------------------------------------------


def _text_sample(i: int, label: str, split: str = "eval") -> Sample:
    return Sample(id=f"{split}{i}", split=split, image_path=None, target={"label": label},
                  sha256=f"{i:064x}", text=f"utterance {i}")


def _emb(*rows: list[float]) -> list[dict[str, np.ndarray]]:
    return [{"embedding": np.asarray(r, dtype=np.float32)} for r in rows]


# Support: "go" = [1,0] and [1,1] -> centroid at 22.5 degrees; "stop" = [0,2], [0,1] -> 90 degrees.
SUPPORT = (_emb([1, 0], [1, 1], [0, 2], [0, 1]),
           [_text_sample(i, lab, "support") for i, lab in enumerate(["go", "go", "stop", "stop"])])
EVAL_LABELS = ["go", "stop", "stop", "go", "go"]
# Predicted: go (18 deg), go (45 deg: cos 22.5 deg to go beats cos 45 deg to stop), stop, stop, go.
EVAL_EMB = _emb([3, 1], [1, 1], [-1, 5], [0, 1], [2, 0])


def test_intent_nearest_centroid_exact_values() -> None:
    samples = [_text_sample(i, lab) for i, lab in enumerate(EVAL_LABELS)]
    reference = _emb([1, 3], [1, 1], [-1, 5], [0, 1], [2, 0])  # only the first differs: cos 0.6
    r = get_scorer("intent").score(EVAL_EMB, samples, reference, support=SUPPORT)
    assert [row["predicted"] for row in r.per_sample] == ["go", "go", "stop", "stop", "go"]
    assert r.metrics["accuracy"] == pytest.approx(3 / 5)
    # go: TP 2, FP 1, FN 1 -> F1 2/3; stop: TP 1, FP 1, FN 1 -> 1/2.
    assert r.metrics["macro_f1"] == pytest.approx(7 / 12)
    assert r.metrics["cosine_agreement"] == pytest.approx((0.6 + 4) / 5)
    assert r.per_sample[1]["similarity"] == pytest.approx(np.cos(np.pi / 8))
    assert r.per_sample[0]["ref_cosine"] == pytest.approx(0.6)
    json.dumps(r.per_sample)
    scorer = get_scorer("intent")
    assert scorer.aggregate(r.per_sample) == r.metrics
    # First two samples alone: go TP 1 FP 1 -> 2/3; stop FN 1 -> 0.
    sub = scorer.aggregate(r.per_sample[:2])
    assert sub["accuracy"] == 0.5 and sub["macro_f1"] == pytest.approx(1 / 3)
    no_ref = scorer.score(EVAL_EMB, samples, support=SUPPORT)
    assert {"accuracy", "macro_f1"} <= set(no_ref.metrics) and "cosine_agreement" not in no_ref.metrics


def test_intent_needs_support_and_embeddings() -> None:
    samples = [_text_sample(i, lab) for i, lab in enumerate(EVAL_LABELS)]
    scorer = get_scorer("intent")
    with pytest.raises(ValueError, match="evaluation.support_split"):
        scorer.score(EVAL_EMB, samples)
    with pytest.raises(ValueError, match="needs 'embedding'"):
        scorer.score([{"boxes": 1}] * 5, samples, support=SUPPORT)
    with pytest.raises(ValueError, match="norm is 0.0"):
        scorer.score(_emb([0, 0], [1, 1], [1, 1], [1, 1], [1, 1]), samples, support=SUPPORT)


# --- language model --------------------------------------------------------------------------


def test_language_model_exact_values() -> None:
    samples = [_text_sample(i, "", "eval") for i in range(2)]
    preds = [{"nll_sum": 2.0, "tokens": 4, "correct": 1}, {"nll_sum": np.float32(1.0), "tokens": 1, "correct": 1}]
    scorer = get_scorer("language-model")
    r = scorer.score(preds, samples)
    assert r.metrics == {"loss": 0.6, "perplexity": pytest.approx(np.exp(0.6)), "next_token_accuracy": 0.4}
    assert scorer.aggregate(r.per_sample) == r.metrics
    assert scorer.aggregate(r.per_sample[1:]) == {"loss": 1.0, "perplexity": pytest.approx(np.e), "next_token_accuracy": 1.0}
    json.dumps(r.per_sample)
    with pytest.raises(ValueError, match="is not a valid count"):
        scorer.score([{"nll_sum": 1.0, "tokens": 1, "correct": 2}], samples[:1])
    with pytest.raises(ValueError, match="hold no tokens"):
        scorer.score([{"nll_sum": 0.0, "tokens": 0, "correct": 0}], samples[:1])
