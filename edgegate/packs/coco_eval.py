"""The ``coco-detection`` scorer: COCO box mAP (pycocotools' COCOeval for bounding boxes,
area "all", up to 100 detections per image and class, no crowd regions) and agreement
of the detections with the FP32 reference.

Predictions (``edgegate.packs.adapters.detection``) carry ``boxes`` (N, 4) xyxy in the
image's pixels, ``scores`` (N,) and ``labels`` (N,) str, the class name of each box (the
scorer matches by name: ground truth is ``Sample.target["labels"]``, one name per box).

How COCO computes AP, and so how this does (checked against pycocotools in the tests):

* per image and class, detections in descending score order (stable) each take the
  unmatched ground-truth box of highest IoU, if that IoU >= t, for each t in
  0.50, 0.55, ..., 0.95;
* per class and t, all the split's detections of that class ranked by score give the
  precision/recall curve; precision is made non-increasing from the right and read at
  the 101 recall points 0, 0.01, ..., 1 (0 beyond the highest recall reached); AP is
  their mean;
* classes without ground truth in the split are left out; ``map50`` is the mean over
  classes of AP at t = 0.5, ``map50_95`` the mean over classes and thresholds.

Per-class AP is in ``ScoreResult.extra["per_class_ap"]`` (not gateable metrics).
``detection_agreement`` is the fraction of images whose detections and the reference's
pair up one to one with the same class at IoU >= 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgegate.packs.boxes import IOU_THRESHOLD, match_detections
from edgegate.packs.sample import Prediction, Sample
from edgegate.packs.scoring import PerSampleScorer, ScoreResult, Support, check_records

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))  # 0.50 .. 0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100  # per image and class, as COCOeval's maxDets[-1]


def as_labelled_detection(pred: Prediction, where: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(boxes (N, 4), scores (N,), labels) of one prediction; a ValueError naming ``where``."""
    try:
        boxes = np.asarray(pred["boxes"], dtype=np.float64)
        scores = np.asarray(pred["scores"], dtype=np.float64).reshape(-1)
        labels = [str(x) for x in np.asarray(pred["labels"]).reshape(-1)]
    except KeyError as exc:
        raise ValueError(
            f"{where}: a coco-detection prediction needs 'boxes', 'scores' and 'labels' "
            f"(class names), missing {exc}"
        ) from None
    boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: boxes must have shape (N, 4), got {boxes.shape}")
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"{where}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
    return boxes, scores, labels


def _ground_truth(sample: Sample) -> tuple[np.ndarray, list[str]]:
    target = sample.target
    boxes = np.asarray(target.get("boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
    labels = [str(x) for x in target.get("labels", [])]
    if len(labels) != len(boxes):
        raise ValueError(
            f"sample {sample.id}: {len(boxes)} ground-truth boxes but {len(labels)} labels "
            "(coco-detection needs an object-detection pack)"
        )
    return boxes, labels


def match_masks(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """One class of one image: detection indices in descending score order (at most
    MAX_DETECTIONS) and, per detection, a bit mask: bit k set when it is a true positive
    at IOU_THRESHOLDS[k]."""
    order = np.argsort(-scores, kind="stable")[:MAX_DETECTIONS]
    masks = [0] * len(order)
    for k, t in enumerate(IOU_THRESHOLDS):
        _, is_tp = match_detections(boxes[order], scores[order], gt, t)
        for rank, tp in enumerate(is_tp):
            masks[rank] |= int(tp) << k
    return order, masks


def interpolated_ap(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """COCO's 101-point interpolated AP of one class at one IoU threshold."""
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tps = np.cumsum(tp[order])
    fps = np.cumsum(~tp[order])
    recall = tps / n_gt
    precision = np.maximum.accumulate((tps / (tps + fps))[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0)
    return float(q.mean())


def _agrees(cand: tuple[np.ndarray, np.ndarray, list[str]], ref: tuple[np.ndarray, np.ndarray, list[str]]) -> bool:
    """Every candidate box pairs with a reference box of the same class at IoU >= 0.5."""
    if len(cand[2]) != len(ref[2]):
        return False
    for name in set(cand[2]) | set(ref[2]):
        c = [i for i, n in enumerate(cand[2]) if n == name]
        r = [i for i, n in enumerate(ref[2]) if n == name]
        if len(c) != len(r):
            return False
        _, is_tp = match_detections(cand[0][c], cand[1][c], ref[0][r], IOU_THRESHOLD)
        if not is_tp.all():
            return False
    return True


class CocoDetectionScorer(PerSampleScorer):
    """COCO mAP@0.5 and mAP@0.5:0.95 over classes with ground truth; agreement with FP32."""

    name = "coco-detection"
    metrics = ("map50", "map50_95", "detection_agreement")

    def score(
        self,
        predictions: Sequence[Prediction],
        samples: Sequence[Sample],
        reference: Sequence[Prediction] | None = None,
        *,
        support: Support | None = None,
    ) -> ScoreResult:
        result = super().score(predictions, samples, reference, support=support)
        result.extra["per_class_ap"] = self.per_class_ap(result.per_sample)
        return result

    def records(
        self, predictions: Sequence[Prediction], samples: Sequence[Sample],
        reference: Sequence[Prediction] | None, support: Support | None,
    ) -> list[dict[str, Any]]:
        # support is not used: detection learns nothing from a support split
        per_sample: list[dict[str, Any]] = []
        for i, (pred, sample) in enumerate(zip(predictions, samples)):
            where = f"prediction {i} ({sample.id})"
            boxes, scores, labels = as_labelled_detection(pred, where)
            gt_boxes, gt_labels = _ground_truth(sample)
            dets: dict[str, dict[str, list[Any]]] = {}
            for name in sorted(set(labels)):
                idx = np.asarray([j for j, n in enumerate(labels) if n == name])
                gt = gt_boxes[[j for j, n in enumerate(gt_labels) if n == name]]
                order, masks = match_masks(boxes[idx], scores[idx], gt)
                dets[name] = {"scores": [float(s) for s in scores[idx][order]], "tp": masks}
            row: dict[str, Any] = {
                "id": sample.id,
                "sha256": sample.sha256,
                "n_gt": {name: gt_labels.count(name) for name in sorted(set(gt_labels))},
                "n_pred": len(boxes),
                "dets": dets,
            }
            if reference is not None:
                ref = as_labelled_detection(reference[i], f"reference {i} ({sample.id})")
                row["n_ref"] = len(ref[0])
                row["agrees"] = _agrees((boxes, scores, labels), ref)
            per_sample.append(row)
        return per_sample

    def per_class_ap(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
        """class name -> {"ap50", "ap50_95", "n_gt"} for every class with ground truth."""
        n_gt: dict[str, int] = {}
        for r in per_sample:
            for name, n in r["n_gt"].items():
                n_gt[name] = n_gt.get(name, 0) + int(n)
        out: dict[str, dict[str, float]] = {}
        for name in sorted(c for c, n in n_gt.items() if n > 0):
            entries = [r["dets"][name] for r in per_sample if name in r["dets"]]
            scores = np.asarray([s for e in entries for s in e["scores"]], dtype=np.float64)
            masks = np.asarray([m for e in entries for m in e["tp"]], dtype=np.int64)
            aps = [interpolated_ap(scores, ((masks >> k) & 1) == 1, n_gt[name]) for k in range(len(IOU_THRESHOLDS))]
            out[name] = {"ap50": aps[0], "ap50_95": float(np.mean(aps)), "n_gt": n_gt[name]}
        return out

    def aggregate(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """mAPs when the records hold any ground truth; agreement when every record was
        scored against a reference."""
        check_records(self.name, per_sample)
        metrics: dict[str, float] = {}
        per_class = self.per_class_ap(per_sample)
        if per_class:
            metrics["map50"] = float(np.mean([c["ap50"] for c in per_class.values()]))
            metrics["map50_95"] = float(np.mean([c["ap50_95"] for c in per_class.values()]))
        if all("agrees" in r for r in per_sample):
            metrics["detection_agreement"] = sum(bool(r["agrees"]) for r in per_sample) / len(per_sample)
        return metrics
