"""The ``text-classification`` scorer: accuracy and macro-F1 on labelled samples, cosine
agreement with the FP32 reference always.

Predictions (``edgegate.packs.adapters.text``) carry either

* ``logits`` (C,) and ``top_labels`` (the model's class names of its best outputs, best
  first): a classifier head, whose predicted class is ``top_labels[0]``; or
* ``embedding`` (D,): a sentence encoder, whose predicted class is the nearest class
  centroid of the support split (as the ``intent`` scorer: the support split's labelled
  samples predicted by the same model; set ``evaluation.support_split``).

``cosine_agreement`` compares each sample's ``embedding`` (or, for a classifier head,
``logits``) with the reference's. Accuracy, macro-F1 and the per-class precision[c],
recall[c], f1[c] cover the labelled samples and are absent when none is labelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgegate.packs.class_metrics import (
    embedding_rows,
    intent_centroids,
    macro_f1,
    per_class_prf,
)
from edgegate.packs.classification import cosine, output_vector
from edgegate.packs.sample import Prediction, Sample
from edgegate.packs.scoring import PerSampleScorer, Support, check_records


def _compared_vector(pred: Prediction, where: str) -> np.ndarray:
    """What cosine agreement compares: the embedding, else the classifier's logits."""
    return output_vector(pred, "embedding" if "embedding" in pred else "logits", where)


def _centroid_labels(
    predictions: Sequence[Prediction], samples: Sequence[Sample], support: Support | None
) -> list[str]:
    """Each sample's nearest support centroid (cosine; ties: the first label in sorted order)."""
    if support is None:
        raise ValueError(
            "text-classification: an embedding model is scored by nearest class centroid, which "
            "needs the support split's predictions; set evaluation.support_split in the pipeline"
        )
    labelled = [(p, s) for p, s in zip(*support) if s.target.get("label") is not None]
    if not labelled:
        raise ValueError("text-classification: the support split has no labelled samples")
    labels, centroids = intent_centroids([p for p, _ in labelled], [s for _, s in labelled])
    emb = embedding_rows(predictions, samples, "prediction")
    if emb.shape[1] != centroids.shape[1]:
        raise ValueError(
            f"text-classification: embeddings have {emb.shape[1]} dimensions, support {centroids.shape[1]}"
        )
    sims = emb @ centroids.T / np.linalg.norm(centroids, axis=1)[None, :]
    return [labels[int(k)] for k in np.argmax(sims, axis=1)]


def _head_label(pred: Prediction, where: str) -> str:
    if "top_labels" not in pred:
        raise ValueError(
            f"{where}: the sample is labelled but the classifier's prediction has no 'top_labels' "
            "(the model's class names); give the adapter the model's class names "
            "(adapter_options.class_names)"
        )
    top = np.asarray(pred["top_labels"]).reshape(-1)
    if top.size == 0:
        raise ValueError(f"{where}: 'top_labels' is empty")
    return str(top[0])


class TextClassificationScorer(PerSampleScorer):
    """Classifier heads by argmax, sentence encoders by nearest support centroid."""

    name = "text-classification"
    metrics = ("accuracy", "macro_f1", "cosine_agreement")

    def records(
        self, predictions: Sequence[Prediction], samples: Sequence[Sample],
        reference: Sequence[Prediction] | None, support: Support | None,
    ) -> list[dict[str, Any]]:
        labelled = [i for i, s in enumerate(samples) if s.target.get("label") is not None]
        predicted: dict[int, str] = {}
        if labelled:
            heads = [i for i in labelled if "logits" in predictions[i]]
            for i in heads:
                predicted[i] = _head_label(predictions[i], f"prediction {i} ({samples[i].id})")
            encoders = [i for i in labelled if i not in predicted]
            if encoders:
                found = _centroid_labels([predictions[i] for i in encoders], [samples[i] for i in encoders], support)
                predicted.update(zip(encoders, found))
        per_sample: list[dict[str, Any]] = []
        for i, sample in enumerate(samples):
            row: dict[str, Any] = {"id": sample.id, "sha256": sample.sha256}
            if i in predicted:
                label = str(sample.target["label"])
                row.update({"label": label, "predicted": predicted[i], "correct": predicted[i] == label})
            if reference is not None:
                where = f"prediction {i} ({sample.id})"
                v, r = _compared_vector(predictions[i], where), _compared_vector(reference[i], f"reference {i}")
                if v.shape != r.shape:
                    raise ValueError(f"{where}: shape {v.shape}, the reference's {r.shape}")
                row["ref_cosine"] = cosine(v, r)
            per_sample.append(row)
        return per_sample

    def aggregate(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        check_records(self.name, per_sample)
        metrics: dict[str, float] = {}
        labelled = [r for r in per_sample if "label" in r]
        if labelled:
            labels = [r["label"] for r in labelled]
            predicted = [r["predicted"] for r in labelled]
            metrics["accuracy"] = sum(bool(r["correct"]) for r in labelled) / len(labelled)
            metrics["macro_f1"] = macro_f1(labels, predicted)
            metrics.update(per_class_prf(labels, predicted))
        if all("ref_cosine" in r for r in per_sample):
            metrics["cosine_agreement"] = sum(float(r["ref_cosine"]) for r in per_sample) / len(per_sample)
        return metrics
