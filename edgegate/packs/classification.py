"""The ``classification`` scorer: top-1 / top-5 accuracy on labelled samples and, against
the FP32 reference, agreement of the output vectors (so an unlabelled pack still gates
INT8 against FP32).

Predictions (``edgegate.packs.adapters.image``) carry:

* ``logits`` (C,): the model's output vector, logits or probabilities as the model gives
  them; ``output`` (a string, optional, default ``"logits"``) says which, so ``mean_kl``
  takes a softmax of logits and uses probabilities as they are;
* ``top_labels`` (k,) str: the model's class names of its k highest outputs, best first
  (k = min(5, C)). Labels are names and output indices are the model's, so only the
  adapter, which knows the model's class names, can tell which output a label is;
  a labelled sample whose prediction has no ``top_labels`` is an error.

Metrics: ``top1_accuracy``, ``top5_accuracy`` over the labelled samples (absent when none
is labelled); with a reference, ``top1_agreement`` (same argmax), ``mean_kl`` (KL divergence
of the candidate's class distribution from the reference's, nats) and ``output_cosine``
(cosine of the two raw output vectors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgegate.packs.sample import Prediction, Sample
from edgegate.packs.scoring import PerSampleScorer, Support, check_records

TOP_K = 5
# Probabilities of exactly 0 (an INT8 softmax underflows) would make the KL infinite.
PROBABILITY_FLOOR = 1e-12


def output_vector(pred: Prediction, key: str, where: str) -> np.ndarray:
    """``pred[key]`` as a finite (C,) float64 vector; a ValueError naming ``where`` otherwise."""
    try:
        v = np.asarray(pred[key], dtype=np.float64)
    except KeyError:
        raise ValueError(f"{where}: the prediction has no '{key}' (keys: {', '.join(sorted(pred))})") from None
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{where}: '{key}' must be a vector (C,), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{where}: '{key}' holds NaN or infinite values")
    return v


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors; two zero vectors agree (1.0), one zero vector does not (0.0)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))


def log_distribution(v: np.ndarray, output: str) -> np.ndarray:
    """Log class probabilities: log-softmax of logits, or the log of given probabilities
    (floored and renormalised)."""
    if output == "probabilities":
        p = np.clip(v, PROBABILITY_FLOOR, None)
        return np.log(p / p.sum())
    shifted = v - v.max()
    return shifted - math.log(float(np.exp(shifted).sum()))


def kl_divergence(ref: np.ndarray, cand: np.ndarray, output: str) -> float:
    """KL(reference || candidate) in nats over the classes."""
    log_p, log_q = log_distribution(ref, output), log_distribution(cand, output)
    return max(float(np.sum(np.exp(log_p) * (log_p - log_q))), 0.0)


def output_kind(pred: Prediction, where: str) -> str:
    kind = str(np.asarray(pred.get("output", "logits")))
    if kind not in ("logits", "probabilities"):
        raise ValueError(f"{where}: 'output' must be 'logits' or 'probabilities', got '{kind}'")
    return kind


class ClassificationScorer(PerSampleScorer):
    """Top-k accuracy with labels, output agreement with the FP32 reference always."""

    name = "classification"
    metrics = ("top1_accuracy", "top5_accuracy", "top1_agreement", "mean_kl", "output_cosine")

    def records(
        self, predictions: Sequence[Prediction], samples: Sequence[Sample],
        reference: Sequence[Prediction] | None, support: Support | None,
    ) -> list[dict[str, Any]]:
        # support is not used: the classes are the model's own
        per_sample: list[dict[str, Any]] = []
        for i, (pred, sample) in enumerate(zip(predictions, samples)):
            where = f"prediction {i} ({sample.id})"
            v = output_vector(pred, "logits", where)
            row: dict[str, Any] = {"id": sample.id, "sha256": sample.sha256, "argmax": int(np.argmax(v))}
            label = sample.target.get("label")
            if label is not None:
                top = self._top_labels(pred, where)
                row.update({"label": str(label), "predicted": top[0], "top1_correct": top[0] == label,
                            "top5_correct": label in top[:TOP_K]})
            if reference is not None:
                ref_where = f"reference {i} ({sample.id})"
                r = output_vector(reference[i], "logits", ref_where)
                if r.shape != v.shape:
                    raise ValueError(f"{where}: {v.size} outputs, the reference has {r.size}")
                kind = output_kind(pred, where)
                if output_kind(reference[i], ref_where) != kind:
                    raise ValueError(f"{where}: the reference's 'output' is not '{kind}'")
                row.update({"ref_argmax": int(np.argmax(r)), "kl": kl_divergence(r, v, kind), "cosine": cosine(r, v)})
            per_sample.append(row)
        return per_sample

    @staticmethod
    def _top_labels(pred: Prediction, where: str) -> list[str]:
        if "top_labels" not in pred:
            raise ValueError(
                f"{where}: the sample is labelled but the prediction has no 'top_labels' (the model's "
                "class names of its best outputs); give the adapter the model's class names "
                "(adapter_options.class_names)"
            )
        top = [str(x) for x in np.asarray(pred["top_labels"]).reshape(-1)]
        if not top:
            raise ValueError(f"{where}: 'top_labels' is empty")
        return top

    def aggregate(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Accuracies over the labelled records (when any); agreement when every record
        was scored against a reference."""
        check_records(self.name, per_sample)
        metrics: dict[str, float] = {}
        labelled = [r for r in per_sample if "label" in r]
        if labelled:
            metrics["top1_accuracy"] = sum(bool(r["top1_correct"]) for r in labelled) / len(labelled)
            metrics["top5_accuracy"] = sum(bool(r["top5_correct"]) for r in labelled) / len(labelled)
        if all("ref_argmax" in r for r in per_sample):
            n = len(per_sample)
            metrics["top1_agreement"] = sum(int(r["argmax"]) == int(r["ref_argmax"]) for r in per_sample) / n
            metrics["mean_kl"] = sum(float(r["kl"]) for r in per_sample) / n
            metrics["output_cosine"] = sum(float(r["cosine"]) for r in per_sample) / n
        return metrics
