"""The scorer framework: what a scorer returns (``ScoreResult``), the ``Scorer`` protocol
and ``PerSampleScorer``, the base of the built-in scorers.

Every scorer's ``score`` builds one JSON-serialisable record per sample and computes
its metrics with ``aggregate(per_sample)``; ``aggregate`` on any subset of those
records gives that subset's metrics, so comparisons can bootstrap confidence
intervals by resampling samples, and the two can never disagree.

It lives apart from the registry (``edgegate.packs.scorers``) so that scorer modules
can derive from it while the registry imports them to register them.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgegate.packs.sample import Prediction, Sample

logger = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]] = field(default_factory=list)  # JSON-serialisable
    # split-level details that are not gateable metrics (e.g. per-class AP), JSON-serialisable
    extra: dict[str, Any] = field(default_factory=dict)


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


def check_records(name: str, per_sample: Sequence[Mapping[str, Any]]) -> None:
    """An empty list of records has no metrics: a ValueError naming the scorer."""
    if not per_sample:
        raise ValueError(f"{name}: no per-sample records to aggregate")


class PerSampleScorer(ABC):
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

    @abstractmethod
    def records(
        self, predictions: Sequence[Prediction], samples: Sequence[Sample],
        reference: Sequence[Prediction] | None, support: Support | None,
    ) -> list[dict[str, Any]]:
        """One JSON-serialisable record per sample (lengths already checked)."""

    @abstractmethod
    def aggregate(self, per_sample: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """The metrics from per-sample records (see Scorer.aggregate)."""
