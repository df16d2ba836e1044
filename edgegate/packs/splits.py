"""Deterministic calibration / support / eval splits of a new pack's samples.

Each sample's place comes from ``sha256(seed, sample's sha256)``: the same data and seed
give the same splits whatever the files are called, the order they were listed in, or
the platform's random generator. A split takes its share of every label (stratified,
largest remainder), and each split lists its samples in that hashed order, so any first
N of a split (a pipeline's ``calibration.samples``) is itself a mixed sample.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction

from edgegate.errors import InputError
from edgegate.packs.sources import SourceItem

CALIBRATION, SUPPORT, EVAL = "calibration", "support", "eval"


@dataclass(frozen=True)
class SplitPlan:
    splits: dict[str, list[SourceItem]]  # in the manifest's order: eval, calibration, support
    stratified: bool


def _stratum(item: SourceItem) -> str | None:
    # a classification sample's label; detection and unlabelled samples share one stratum
    return item.label


def _key(seed: int, item: SourceItem) -> str:
    return hashlib.sha256(f"{seed}\n{item.sha256}".encode()).hexdigest()


def _take(groups: dict[str | None, list[SourceItem]], n: int) -> list[SourceItem]:
    """n samples from ``groups`` in proportion to their sizes (largest remainder; ties to
    the larger group, then by label), removed from the groups."""
    total = sum(len(g) for g in groups.values())
    exact = {k: Fraction(n * len(g), total) for k, g in groups.items()}
    counts = {k: math.floor(q) for k, q in exact.items()}
    left = n - sum(counts.values())
    order = sorted(groups, key=lambda k: (-(exact[k] - counts[k]), -len(groups[k]), k is None, k or ""))
    for k in order[:left]:
        counts[k] += 1
    taken: list[SourceItem] = []
    for k, count in counts.items():
        taken += groups[k][:count]
        groups[k] = groups[k][count:]
    return taken


def plan_splits(
    items: list[SourceItem], *, calibration: int, support: int, eval_: int | None, seed: int, shown: str
) -> SplitPlan:
    """Disjoint splits of ``items``: ``calibration`` and ``support`` samples, then
    ``eval_`` (None: all the rest). Too few samples is an InputError naming the source."""
    wanted = calibration + support + (eval_ or 1)
    if len(items) < wanted:
        parts = [f"--calibration {calibration}"] + ([f"--support {support}"] if support else [])
        parts.append(f"--eval {eval_}" if eval_ is not None else "at least 1 eval sample")
        raise InputError(
            f"{shown}: {len(items)} usable sample(s), fewer than {' + '.join(parts)} = {wanted}; "
            "add samples or ask for fewer"
        )
    labelled = [i for i in items if i.label is not None]
    if support and not labelled:
        raise InputError("--support: the support split gives each class its centroid; the samples have no labels")
    stratified = bool(labelled)
    ordered = sorted(items, key=lambda i: _key(seed, i))
    groups: dict[str | None, list[SourceItem]] = {}
    for item in ordered:
        groups.setdefault(_stratum(item) if stratified else None, []).append(item)
    position = {item.sha256: n for n, item in enumerate(ordered)}

    def in_order(split: list[SourceItem]) -> list[SourceItem]:
        return sorted(split, key=lambda i: position[i.sha256])

    calib = in_order(_take(groups, calibration))
    supp = in_order(_take(groups, support)) if support else []
    if support:
        missing = sorted({i.label for i in labelled if i.label is not None} - {i.label for i in supp})
        if missing:
            raise InputError(
                f"--support {support}: gives class(es) {', '.join(missing)} no support sample; "
                "raise --support (at least one per class)"
            )
    rest = sum(len(g) for g in groups.values())
    evaluation = in_order(_take(groups, rest if eval_ is None else eval_))
    splits = {EVAL: evaluation, CALIBRATION: calib}
    if support:
        splits[SUPPORT] = supp
    return SplitPlan(splits=splits, stratified=stratified)
