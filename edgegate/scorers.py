"""Scorers turn a split's predictions into metrics, plus per-sample evidence.

A scorer is registered once under a unique name; a PromptPack's manifest names
the scorers that apply to it. Metric directions live in ``edgegate.metrics``;
every metric here is a ratio in [0, 1] where higher is better.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import numpy as np

from edgegate.errors import UnknownNameError

if TYPE_CHECKING:
    from edgegate.promptpack import Sample

logger = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5

# A model's output for one sample; its keys depend on the task.
Prediction = Mapping[str, Any]


class DetectionPrediction(TypedDict):
    boxes: np.ndarray  # (N, 4) float, [x1, y1, x2, y2] in image pixels, after NMS and thresholding
    scores: np.ndarray  # (N,) confidence, used to rank detections for matching and map50


@dataclass
class ScoreResult:
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]] = field(default_factory=list)  # JSON-serialisable


class Scorer(Protocol):
    name: str
    metrics: tuple[str, ...]

    def score(
        self,
        predictions: Sequence[Prediction],
        samples: Sequence[Sample],
        reference: Sequence[Prediction] | None = None,
    ) -> ScoreResult: ...


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


class DetectionScorer:
    """Single-class box detection, micro-averaged over a split at IoU >= 0.5.

    Predictions are scored as given: apply the model's score threshold and NMS first.
    ``map50`` additionally uses the scores to rank all detections of the split.
    """

    name = "detection"
    metrics = ("precision", "recall", "f1", "map50", "accuracy", "baseline_agreement")

    def __init__(self, iou_threshold: float = IOU_THRESHOLD) -> None:
        self.iou_threshold = iou_threshold

    def score(
        self,
        predictions: Sequence[Prediction],
        samples: Sequence[Sample],
        reference: Sequence[Prediction] | None = None,
    ) -> ScoreResult:
        if not samples:
            raise ValueError("no samples to score")
        if len(predictions) != len(samples):
            raise ValueError(f"{len(predictions)} predictions for {len(samples)} samples")
        if reference is not None and len(reference) != len(samples):
            raise ValueError(f"{len(reference)} reference predictions for {len(samples)} samples")

        tp = fp = fn = correct = 0
        ref_tp = ref_fp = ref_fn = 0
        all_scores: list[np.ndarray] = []
        all_tp: list[np.ndarray] = []
        n_gt_total = 0
        per_sample: list[dict[str, Any]] = []
        for i, (pred, sample) in enumerate(zip(predictions, samples)):
            boxes, scores = _as_detection(pred, f"prediction {i} ({sample.id})")
            gt = np.asarray(sample.target["boxes"], dtype=np.float64).reshape(-1, 4)
            order, is_tp = match_detections(boxes, scores, gt, self.iou_threshold)
            s_tp = int(is_tp.sum())
            s_fp = len(boxes) - s_tp
            s_fn = len(gt) - s_tp
            s_correct = (len(gt) > 0) == (len(boxes) > 0)
            tp, fp, fn = tp + s_tp, fp + s_fp, fn + s_fn
            correct += int(s_correct)
            n_gt_total += len(gt)
            all_scores.append(scores[order])
            all_tp.append(is_tp)
            row: dict[str, Any] = {
                "id": sample.id,
                "sha256": sample.sha256,
                "n_gt": len(gt),
                "n_pred": len(boxes),
                "tp": s_tp,
                "fp": s_fp,
                "fn": s_fn,
                "correct": bool(s_correct),
                "max_score": float(scores.max()) if len(scores) else None,
            }
            if reference is not None:
                ref_boxes, _ = _as_detection(reference[i], f"reference {i} ({sample.id})")
                _, agree = match_detections(boxes, scores, ref_boxes, self.iou_threshold)
                a_tp = int(agree.sum())
                row.update(
                    {"n_ref": len(ref_boxes), "ref_tp": a_tp, "ref_fp": len(boxes) - a_tp,
                     "ref_fn": len(ref_boxes) - a_tp}
                )
                ref_tp += a_tp
                ref_fp += len(boxes) - a_tp
                ref_fn += len(ref_boxes) - a_tp
            per_sample.append(row)

        precision, recall, f1 = detection_prf(tp, fp, fn)
        scores_cat = np.concatenate(all_scores) if all_scores else np.zeros(0)
        tp_cat = np.concatenate(all_tp) if all_tp else np.zeros(0, dtype=bool)
        metrics = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "map50": average_precision(scores_cat, tp_cat, n_gt_total),
            "accuracy": correct / len(samples),
        }
        if reference is not None:
            metrics["baseline_agreement"] = detection_prf(ref_tp, ref_fp, ref_fn)[2]
        logger.debug("detection: %d samples, tp=%d fp=%d fn=%d", len(samples), tp, fp, fn)
        return ScoreResult(metrics=metrics, per_sample=per_sample)


register_scorer(DetectionScorer())
