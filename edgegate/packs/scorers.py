"""Scorers turn a split's predictions into metrics, plus per-sample evidence.

A scorer is registered once under a unique name; a PromptPack's manifest names
the scorers that apply to it. Metric directions live in ``edgegate.metrics``.

Every scorer's ``score`` builds one JSON-serialisable record per sample and computes
its metrics with ``aggregate(per_sample)``; ``aggregate`` on any subset of those
records gives that subset's metrics, so comparisons can bootstrap confidence
intervals by resampling samples, and the two can never disagree.

``support`` (optional, keyword) is ``(predictions, samples)`` of a pack's support
split, predicted by the same model: few-shot scorers (``intent``) build their
classifier from it.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgegate.errors import UnknownNameError
from edgegate.packs.boxes import IOU_THRESHOLD, iou_matrix, match_detections
from edgegate.packs.class_metrics import (
    detection_prf,
    embedding_rows,
    intent_centroids,
    macro_f1,
    per_class_prf,
)
from edgegate.packs.classification import ClassificationScorer
from edgegate.packs.coco_eval import CocoDetectionScorer
from edgegate.packs.sample import Prediction, Sample
from edgegate.packs.scoring import (
    PerSampleScorer,
    Scorer,
    ScoreResult,
    Support,
    check_records,
)
from edgegate.packs.text_classification import TextClassificationScorer

# The framework, box and class-metric helpers live in their own modules (so scorer modules
# can build on them while this registry imports those modules); importable from here too.
__all__ = [
    "IOU_THRESHOLD", "ClassificationScorer", "CocoDetectionScorer", "DetectionScorer", "IntentScorer",
    "LanguageModelScorer", "PerSampleScorer", "ScoreResult", "Scorer", "Support", "TextClassificationScorer",
    "average_precision", "check_records", "detection_prf", "get_scorer", "intent_centroids", "iou_matrix",
    "macro_f1", "match_detections", "per_class_prf", "register_scorer", "scorer_names", "unknown_scorer_message",
]

logger = logging.getLogger(__name__)

_SCORERS: dict[str, Scorer] = {}


def register_scorer(scorer: Scorer) -> None:
    """Add ``scorer`` to the registry; a second scorer with the same name is a ValueError."""
    if scorer.name in _SCORERS:
        raise ValueError(f"scorer '{scorer.name}' is already registered")
    _SCORERS[scorer.name] = scorer


def unknown_scorer_message(name: str) -> str:
    known = sorted(_SCORERS)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = ""
    if close:
        hint = " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"
    return f"unknown scorer '{name}'{hint}; known: {', '.join(known)}"


def get_scorer(name: str) -> Scorer:
    try:
        return _SCORERS[name]
    except KeyError:
        raise UnknownNameError(unknown_scorer_message(name)) from None


def scorer_names() -> list[str]:
    return sorted(_SCORERS)


# --- detection ----------------------------------------------------------------------


def average_precision(scores: np.ndarray, is_tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP (VOC2010+): area under the precision envelope.

    With no ground truth, AP is 1.0 when there are no detections and 0.0 otherwise.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_tp = np.asarray(is_tp, dtype=bool)
    if n_gt == 0:
        return 1.0 if len(scores) == 0 else 0.0
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    recall = tp / n_gt
    precision = tp / (tp + fp)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _as_detection(pred: Prediction, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        boxes = np.asarray(pred["boxes"], dtype=np.float64)
        scores = np.asarray(pred["scores"], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"{where}: a detection prediction needs 'boxes' and 'scores'") from exc
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: boxes must have shape (N, 4), got {boxes.shape}")
    scores = scores.reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"{where}: {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    return boxes, scores


class DetectionScorer(PerSampleScorer):
    """Single-class box detection, micro-averaged over a split at IoU >= 0.5.

    Predictions are scored as given: apply the model's score threshold and NMS first.
    ``map50`` additionally uses the scores to rank all detections of the split.
    """

    name = "detection"
    metrics = ("precision", "recall", "f1", "map50", "accuracy", "baseline_agreement")

    def __init__(self, iou_threshold: float = IOU_THRESHOLD) -> None:
        self.iou_threshold = iou_threshold

    def records(
        self, predictions: Sequence[Prediction], samples: Sequence[Sample],
        reference: Sequence[Prediction] | None, support: Support | None,
    ) -> list[dict[str, Any]]:
        # support is not used: detection learns nothing from a support split
        per_sample: list[dict[str, Any]] = []
        for i, (pred, sample) in enumerate(zip(predictions, samples)):
            boxes, scores = _as_detection(pred, f"prediction {i} ({sample.id})")
            gt = np.asarray(sample.target["boxes"], dtype=np.float64).reshape(-1, 4)
            order, is_tp = match_detections(boxes, scores, gt, self.iou_threshold)
            s_tp = int(is_tp.sum())
            row: dict[str, Any] = {
                "id": sample.id,
                "sha256": sample.sha256,
                "n_gt": len(gt),
                "n_pred": len(boxes),
                "tp": s_tp,
                "fp": len(boxes) - s_tp,
                "fn": len(gt) - s_tp,
                "correct": (len(gt) > 0) == (len(boxes) > 0),
                "max_score": float(scores.max()) if len(scores) else None,
                # every detection's score in matching order and whether it was a TP: map50
                "scores": [float(v) for v in scores[order]],
                "is_tp": [bool(v) for v in is_tp],
            }
            if reference is not None:
                ref_boxes, _ = _as_detection(reference[i], f"reference {i} ({sample.id})")
                _, agree = match_detections(boxes, scores, ref_boxes, self.iou_threshold)
                a_tp = int(agree.sum())
                row.update(
                    {"n_ref": len(ref_boxes), "ref_tp": a_tp, "ref_fp": len(boxes) - a_tp,
                     "ref_fn": len(ref_boxes) - a_tp}
                )
            per_sample.append(row)
        return per_sample

    def aggregate(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Micro-averaged counts and map50 over the records; ``baseline_agreement``
        when every record was scored against a reference."""
        check_records(self.name, per_sample)
        tp = sum(int(r["tp"]) for r in per_sample)
        fp = sum(int(r["fp"]) for r in per_sample)
        fn = sum(int(r["fn"]) for r in per_sample)
        precision, recall, f1 = detection_prf(tp, fp, fn)
        scores = np.concatenate([np.asarray(r["scores"], dtype=np.float64) for r in per_sample])
        is_tp = np.concatenate([np.asarray(r["is_tp"], dtype=bool) for r in per_sample])
        metrics = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "map50": average_precision(scores, is_tp, sum(int(r["n_gt"]) for r in per_sample)),
            "accuracy": sum(bool(r["correct"]) for r in per_sample) / len(per_sample),
        }
        if all("ref_tp" in r for r in per_sample):
            metrics["baseline_agreement"] = detection_prf(
                sum(int(r["ref_tp"]) for r in per_sample),
                sum(int(r["ref_fp"]) for r in per_sample),
                sum(int(r["ref_fn"]) for r in per_sample),
            )[2]
        return metrics


register_scorer(DetectionScorer())


# --- intent classification (few-shot, nearest centroid) -----------------------------------


class IntentScorer(PerSampleScorer):
    """Few-shot intent classification from sentence embeddings.

    Predictions carry ``embedding`` (D,). Each label's centroid is the mean of the
    L2-normalised embeddings of its support samples, computed from the *same model's*
    support predictions, so the candidate is judged with its own centroids; a sample's
    predicted label is the centroid of highest cosine similarity (ties: first label in
    sorted order). With a reference (the FP32 baseline's predictions),
    ``cosine_agreement`` is the mean cosine between the two embeddings of each sample.
    """

    name = "intent"
    metrics = ("accuracy", "macro_f1", "cosine_agreement")

    def records(
        self, predictions: Sequence[Prediction], samples: Sequence[Sample],
        reference: Sequence[Prediction] | None, support: Support | None,
    ) -> list[dict[str, Any]]:
        if support is None:
            raise ValueError(
                "intent: nearest-centroid scoring needs the support split's predictions "
                "(support=...); set evaluation.support_split in the pipeline"
            )
        labels, centroids = intent_centroids(*support)
        emb = embedding_rows(predictions, samples, "prediction")
        if emb.shape[1] != centroids.shape[1]:
            raise ValueError(
                f"intent: embeddings have {emb.shape[1]} dimensions, support {centroids.shape[1]}"
            )
        sims = emb @ centroids.T / np.linalg.norm(centroids, axis=1)[None, :]
        best = np.argmax(sims, axis=1)  # first maximum: ties go to the first sorted label
        ref = embedding_rows(reference, samples, "reference") if reference is not None else None
        per_sample: list[dict[str, Any]] = []
        for i, sample in enumerate(samples):
            label = str(sample.target["label"])
            row: dict[str, Any] = {
                "id": sample.id,
                "sha256": sample.sha256,
                "label": label,
                "predicted": labels[int(best[i])],
                "correct": labels[int(best[i])] == label,
                "similarity": float(sims[i, best[i]]),
            }
            if ref is not None:
                row["ref_cosine"] = float(emb[i] @ ref[i])
            per_sample.append(row)
        unseen = sorted({r["label"] for r in per_sample} - set(labels))
        if unseen:
            logger.warning("intent: labels with no support samples, never predicted: %s", unseen)
        return per_sample

    def aggregate(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        check_records(self.name, per_sample)
        labels = [r["label"] for r in per_sample]
        predicted = [r["predicted"] for r in per_sample]
        metrics = {
            "accuracy": sum(bool(r["correct"]) for r in per_sample) / len(per_sample),
            "macro_f1": macro_f1(labels, predicted),
        }
        metrics.update(per_class_prf(labels, predicted))
        if all("ref_cosine" in r for r in per_sample):
            metrics["cosine_agreement"] = sum(float(r["ref_cosine"]) for r in per_sample) / len(per_sample)
        return metrics


register_scorer(IntentScorer())


# --- language modeling --------------------------------------------------------------------


class LanguageModelScorer(PerSampleScorer):
    """Next-token prediction over a split's passages.

    Predictions carry ``nll_sum`` (sum of the negative log-likelihoods, in nats, of a
    passage's predicted tokens), ``tokens`` (how many) and ``correct`` (how many the
    argmax got right). ``loss`` is total NLL / total tokens (tokens weigh equally, not
    passages), ``perplexity`` exp(loss), ``next_token_accuracy`` correct / tokens.
    """

    name = "language-model"
    metrics = ("loss", "perplexity", "next_token_accuracy")

    def records(
        self, predictions: Sequence[Prediction], samples: Sequence[Sample],
        reference: Sequence[Prediction] | None, support: Support | None,
    ) -> list[dict[str, Any]]:
        # neither a reference nor a support split changes a passage's likelihood
        per_sample: list[dict[str, Any]] = []
        for i, (pred, sample) in enumerate(zip(predictions, samples)):
            try:
                nll, tokens, correct = float(pred["nll_sum"]), int(pred["tokens"]), int(pred["correct"])
            except KeyError:
                raise ValueError(
                    f"prediction {i} ({sample.id}): a language-model prediction needs "
                    "'nll_sum', 'tokens' and 'correct'"
                ) from None
            if tokens < 0 or not 0 <= correct <= tokens or not math.isfinite(nll) or nll < 0:
                raise ValueError(
                    f"prediction {i} ({sample.id}): nll_sum={nll}, tokens={tokens}, correct={correct} "
                    "is not a valid count"
                )
            per_sample.append(
                {"id": sample.id, "sha256": sample.sha256, "nll_sum": nll, "tokens": tokens, "correct": correct}
            )
        return per_sample

    def aggregate(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        check_records(self.name, per_sample)
        tokens = sum(int(r["tokens"]) for r in per_sample)
        if tokens == 0:
            raise ValueError(f"{self.name}: the records hold no tokens")
        loss = sum(float(r["nll_sum"]) for r in per_sample) / tokens
        return {
            "loss": loss,
            "perplexity": math.exp(loss),
            "next_token_accuracy": sum(int(r["correct"]) for r in per_sample) / tokens,
        }


register_scorer(LanguageModelScorer())

# The generic scorers of the bring-your-own-model tasks (issue 14), each in its own module.
register_scorer(ClassificationScorer())
register_scorer(CocoDetectionScorer())
register_scorer(TextClassificationScorer())
