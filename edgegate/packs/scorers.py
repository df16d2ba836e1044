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
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgegate.errors import UnknownNameError
from edgegate.packs.sample import Prediction, Sample

logger = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5

@dataclass
class ScoreResult:
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]] = field(default_factory=list)  # JSON-serialisable


# (predictions, samples) of the support split, for scorers that learn from it.
Support = tuple[Sequence[Prediction], Sequence[Sample]]


class Scorer(Protocol):
    name: str
    metrics: tuple[str, ...]

    def score(
        self,
        predictions: Sequence[Prediction],
        samples: Sequence[Sample],
        reference: Sequence[Prediction] | None = None,
        *,
        support: Support | None = None,
    ) -> ScoreResult: ...

    def aggregate(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """The split-level metrics of these per-sample records (any subset of them)."""
        ...


def _check_records(name: str, per_sample: Sequence[Mapping[str, Any]]) -> None:
    if not per_sample:
        raise ValueError(f"{name}: no per-sample records to aggregate")


class PerSampleScorer:
    """The built-in scorers' ``score``: check the inputs, build one record per sample
    (``records``) and compute the metrics from the records (``aggregate``)."""

    name: str
    metrics: tuple[str, ...]

    def score(
        self,
        predictions: Sequence[Prediction],
        samples: Sequence[Sample],
        reference: Sequence[Prediction] | None = None,
        *,
        support: Support | None = None,
    ) -> ScoreResult:
        if not samples:
            raise ValueError("no samples to score")
        if len(predictions) != len(samples):
            raise ValueError(f"{len(predictions)} predictions for {len(samples)} samples")
        if reference is not None and len(reference) != len(samples):
            raise ValueError(f"{len(reference)} reference predictions for {len(samples)} samples")
        per_sample = self.records(predictions, samples, reference, support)
        metrics = self.aggregate(per_sample)
        logger.debug("%s: %d samples, %s", self.name, len(samples), metrics)
        return ScoreResult(metrics=metrics, per_sample=per_sample)

    def records(
        self, predictions: Sequence[Prediction], samples: Sequence[Sample],
        reference: Sequence[Prediction] | None, support: Support | None,
    ) -> list[dict[str, Any]]:
        """One JSON-serialisable record per sample (lengths already checked)."""
        raise NotImplementedError

    def aggregate(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        raise NotImplementedError  # see Scorer.aggregate


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


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), as (N, M) float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0.0, None) * np.clip(iy2 - iy1, 0.0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0.0, None) * np.clip(a[:, 3] - a[:, 1], 0.0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_detections(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    gt_boxes: np.ndarray,
    iou_threshold: float = IOU_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching: predictions in descending score order each take the unmatched
    ground-truth box they overlap most, if that IoU >= ``iou_threshold``.

    Returns (order, is_tp): the prediction indices in the order they were matched
    (stable on ties, so equal scores keep input order) and a bool per entry of order.
    """
    order = np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable")
    is_tp = np.zeros(len(order), dtype=bool)
    if len(order) == 0 or len(gt_boxes) == 0:
        return order, is_tp
    ious = iou_matrix(pred_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for rank, p in enumerate(order):
        candidates = np.where(taken, -1.0, ious[p])
        g = int(np.argmax(candidates))
        if candidates[g] >= iou_threshold:
            taken[g] = True
            is_tp[rank] = True
    return order, is_tp


def _ratio(num: int, den: int, *, if_empty: float) -> float:
    return num / den if den else if_empty


def detection_prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts, defined at the edges so that

    - nothing predicted and nothing to find scores 1.0 on all three;
    - precision with no predictions is 1.0 only if there was nothing to find, else 0.0;
    - recall with nothing to find is 1.0 only if nothing was predicted, else 0.0;
    - F1 is 2TP / (2TP + FP + FN), which is 1.0 when all three counts are 0.
    """
    precision = _ratio(tp, tp + fp, if_empty=1.0 if fn == 0 else 0.0)
    recall = _ratio(tp, tp + fn, if_empty=1.0 if fp == 0 else 0.0)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn, if_empty=1.0)
    return precision, recall, f1


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
        _check_records(self.name, per_sample)
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


def _embeddings(preds: Sequence[Prediction], samples: Sequence[Sample], what: str) -> np.ndarray:
    """(N, D) float64 L2-normalised rows from each prediction's ``embedding``."""
    rows = []
    for i, (pred, sample) in enumerate(zip(preds, samples)):
        try:
            emb = np.asarray(pred["embedding"], dtype=np.float64)
        except KeyError:
            raise ValueError(f"{what} {i} ({sample.id}): an intent prediction needs 'embedding'") from None
        if emb.ndim != 1 or (rows and emb.shape != rows[0].shape):
            raise ValueError(f"{what} {i} ({sample.id}): embedding has shape {emb.shape}")
        norm = float(np.linalg.norm(emb))
        if not math.isfinite(norm) or norm == 0.0:
            raise ValueError(f"{what} {i} ({sample.id}): embedding norm is {norm}, cannot normalise")
        rows.append(emb / norm)
    return np.stack(rows)


def intent_centroids(
    predictions: Sequence[Prediction], samples: Sequence[Sample]
) -> tuple[list[str], np.ndarray]:
    """Sorted labels and their centroids: the mean of each label's L2-normalised
    support embeddings (not re-normalised; cosine similarity divides by its norm)."""
    if not samples or len(predictions) != len(samples):
        raise ValueError(
            f"intent: support has {len(predictions)} predictions for {len(samples)} samples"
        )
    emb = _embeddings(predictions, samples, "support prediction")
    labels = sorted({str(s.target["label"]) for s in samples})
    index = {label: k for k, label in enumerate(labels)}
    which = np.array([index[str(s.target["label"])] for s in samples])
    centroids = np.stack([emb[which == k].mean(axis=0) for k in range(len(labels))])
    return labels, centroids


def _label_counts(true: Sequence[str], predicted: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """(TP, FP, FN) of every label that occurs in ``true`` or ``predicted``, sorted by label."""
    counts: dict[str, tuple[int, int, int]] = {}
    for c in sorted(set(true) | set(predicted)):
        tp = sum(t == c and p == c for t, p in zip(true, predicted))
        fp = sum(t != c and p == c for t, p in zip(true, predicted))
        fn = sum(t == c and p != c for t, p in zip(true, predicted))
        counts[c] = (tp, fp, fn)
    return counts


def macro_f1(true: Sequence[str], predicted: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over the labels that occur in ``true`` or
    ``predicted``; a label's F1 is 2TP / (2TP + FP + FN)."""
    counts = _label_counts(true, predicted)
    if not counts:
        raise ValueError("macro_f1 of no samples")
    f1s = [detection_prf(*c)[2] for c in counts.values()]
    return sum(f1s) / len(f1s)


def per_class_prf(labels: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """precision[c], recall[c], f1[c] for every class c seen in labels or predictions
    (gateable per class: ``precision[stop] >= 0.98``)."""
    out: dict[str, float] = {}
    for c, counts in _label_counts(labels, predicted).items():
        precision, recall, f1 = detection_prf(*counts)
        out[f"precision[{c}]"], out[f"recall[{c}]"], out[f"f1[{c}]"] = precision, recall, f1
    return out


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
        emb = _embeddings(predictions, samples, "prediction")
        if emb.shape[1] != centroids.shape[1]:
            raise ValueError(
                f"intent: embeddings have {emb.shape[1]} dimensions, support {centroids.shape[1]}"
            )
        sims = emb @ centroids.T / np.linalg.norm(centroids, axis=1)[None, :]
        best = np.argmax(sims, axis=1)  # first maximum: ties go to the first sorted label
        ref = _embeddings(reference, samples, "reference") if reference is not None else None
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
        _check_records(self.name, per_sample)
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
        _check_records(self.name, per_sample)
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
