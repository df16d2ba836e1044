"""Per-class metrics from labels (precision, recall, F1, macro-F1) and class centroids
from embeddings: shared by the scorers that classify (intent, text-classification) and
by the detection scorer's counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgegate.packs.sample import Prediction, Sample


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


def embedding_rows(preds: Sequence[Prediction], samples: Sequence[Sample], what: str) -> np.ndarray:
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
    emb = embedding_rows(predictions, samples, "support prediction")
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
