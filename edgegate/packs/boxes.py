"""Box geometry shared by detection adapters (non-maximum suppression) and detection
scorers (matching predictions to ground truth): boxes are (N, 4) ``x1, y1, x2, y2``.
"""

from __future__ import annotations

import numpy as np

IOU_THRESHOLD = 0.5


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


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first.

    A box is dropped when it overlaps an already kept (higher-scoring) box with IoU
    above ``iou_threshold``; equal scores keep their input order.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if len(order) == 0:
        return order
    ious = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= ious[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """NMS within each class (boxes of different classes never suppress each other):
    indices of the kept boxes, highest score first."""
    classes = np.asarray(classes)
    kept = [
        np.flatnonzero(classes == c)[nms(boxes[classes == c], scores[classes == c], iou_threshold)]
        for c in np.unique(classes)
    ]
    if not kept:
        return np.zeros(0, dtype=np.int64)
    idx = np.concatenate(kept)
    return idx[np.argsort(-np.asarray(scores, dtype=np.float64)[idx], kind="stable")]
