"""The metric registry: every metric's name, unit, direction and kind, in one place.

Compare, gates and reports read direction and unit from here; an unknown metric
name is an error with a "did you mean" hint, never a guess.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from edgegate.errors import UnknownNameError


class Direction(str, Enum):
    """Which way is better for a metric."""

    HIGHER = "higher"
    LOWER = "lower"


class Source(str, Enum):
    """Where a number came from. Every measurement carries one."""

    DEVICE = "device"
    AIHUB_PROFILE = "aihub-profile"
    HOST_EMULATOR = "host-emulator"
    HOST_CPU = "host-cpu"
    COMPUTED = "computed"  # scores, sizes, counts: the same wherever they are computed


class MetricKind(str, Enum):
    LATENCY = "latency"
    MEMORY = "memory"
    SIZE = "size"
    QUALITY = "quality"
    PLACEMENT = "placement"
    TIME = "time"
    LOSS = "loss"


_TIMING_KINDS = frozenset({MetricKind.LATENCY, MetricKind.MEMORY, MetricKind.TIME})


@dataclass(frozen=True)
class MetricDef:
    name: str
    unit: str
    direction: Direction
    kind: MetricKind
    description: str

    @property
    def timing(self) -> bool:
        """True when the value depends on where it was measured (latency, memory, time)."""
        return self.kind in _TIMING_KINDS


@dataclass(frozen=True)
class Measurement:
    """One number with its provenance. ``unit`` is only set when it differs from
    the registry's or must be shown explicitly."""

    value: float
    source: Source
    unit: str | None = None


_REGISTRY: dict[str, MetricDef] = {}


def format_suggestion(name: str, known: Iterable[str], *, n: int = 3) -> str:
    """Return " (did you mean 'x'?)" for close matches of ``name``, or "" when none."""
    matches = difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)
    if not matches:
        return ""
    quoted = [f"'{m}'" for m in matches]
    if len(quoted) == 1:
        alternatives = quoted[0]
    else:
        alternatives = ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f" (did you mean {alternatives}?)"


def register_metric(defn: MetricDef) -> MetricDef:
    """Add a metric to the registry. A second definition of the same name is a ValueError."""
    if defn.name in _REGISTRY:
        raise ValueError(f"metric '{defn.name}' is already registered")
    _REGISTRY[defn.name] = defn
    return defn


_PER_CLASS = re.compile(r"^([a-z0-9_]+)\[([^\]]+)\]$")
_PER_CLASS_BASES = ("precision", "recall", "f1")


def get_metric(name: str) -> MetricDef:
    """Look a metric up by name; an unknown name raises UnknownNameError with a hint."""
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    per_class = _PER_CLASS.match(name)
    if per_class and per_class.group(1) in _PER_CLASS_BASES:
        # precision[stop]: the base metric's unit and direction, for one class
        base = _REGISTRY[per_class.group(1)]
        return MetricDef(name, base.unit, base.direction, base.kind, f"{base.description}, class {per_class.group(2)}")
    hint = format_suggestion(name, _REGISTRY)
    if hint:
        raise UnknownNameError(f"unknown metric '{name}'{hint}")
    known = sorted(_REGISTRY)
    shown = ", ".join(known[:8])
    more = f", ... ({len(known)} in all)" if len(known) > 8 else ""
    raise UnknownNameError(f"unknown metric '{name}' (known: {shown}{more})")


def is_better(name: str, a: float, b: float) -> bool:
    """True when ``a`` is strictly better than ``b`` for metric ``name``."""
    if get_metric(name).direction is Direction.HIGHER:
        return a > b
    return a < b


def all_metrics() -> list[MetricDef]:
    """Every registered metric, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


_H, _L = Direction.HIGHER, Direction.LOWER
_QUALITY, _LOSS, _LATENCY, _TIME, _MEMORY, _SIZE, _PLACEMENT = (
    MetricKind.QUALITY, MetricKind.LOSS, MetricKind.LATENCY, MetricKind.TIME, MetricKind.MEMORY,
    MetricKind.SIZE, MetricKind.PLACEMENT,
)

# The built-in metrics as data: (name, unit, direction, kind, description).
_BUILTINS: tuple[tuple[str, str, Direction, MetricKind, str], ...] = (
    # Quality scores, 0..1.
    ("accuracy", "ratio", _H, _QUALITY, "fraction of samples predicted correctly"),
    ("precision", "ratio", _H, _QUALITY, "true positives / predicted positives"),
    ("recall", "ratio", _H, _QUALITY, "true positives / actual positives"),
    ("f1", "ratio", _H, _QUALITY, "harmonic mean of precision and recall"),
    ("map50", "ratio", _H, _QUALITY, "mean average precision at IoU 0.5"),
    ("baseline_agreement", "ratio", _H, _QUALITY,
     "fraction of samples where the candidate's output matches the FP32 baseline's"),
    ("macro_f1", "ratio", _H, _QUALITY, "unweighted mean of the per-class F1 scores"),
    ("cosine_agreement", "ratio", _H, _QUALITY,
     "mean cosine similarity between the candidate's and the FP32 baseline's embeddings"),
    ("next_token_accuracy", "ratio", _H, _QUALITY, "fraction of next tokens predicted exactly"),
    # Classification (scorer `classification`): labels where there are some, else FP32 agreement.
    ("top1_accuracy", "ratio", _H, _QUALITY, "fraction of labelled samples whose best class is the label"),
    ("top5_accuracy", "ratio", _H, _QUALITY, "fraction of labelled samples with the label among the 5 best classes"),
    ("top1_agreement", "ratio", _H, _QUALITY,
     "fraction of samples whose best class is the FP32 baseline's best class"),
    ("mean_kl", "nats", _L, _QUALITY,
     "mean KL divergence of the candidate's class distribution from the FP32 baseline's"),
    ("output_cosine", "ratio", _H, _QUALITY,
     "mean cosine similarity between the candidate's and the FP32 baseline's output vectors"),
    # COCO detection (scorer `coco-detection`; map50 above is its AP at IoU 0.5).
    ("map50_95", "ratio", _H, _QUALITY, "COCO mean average precision over IoU 0.50:0.05:0.95"),
    ("detection_agreement", "ratio", _H, _QUALITY,
     "fraction of images whose detections match the FP32 baseline's (same class, IoU >= 0.5)"),
    # Losses.
    ("loss", "", _L, _LOSS, "mean loss over the evaluation split"),
    ("perplexity", "", _L, _LOSS, "exp of the mean token cross-entropy"),
    # Latency: per-inference, summarised by stats.summarize_latency.
    ("inference_time_ms", "ms", _L, _LATENCY, "median inference latency"),
    ("latency_min_ms", "ms", _L, _LATENCY, "fastest inference"),
    ("latency_p90_ms", "ms", _L, _LATENCY, "90th percentile inference latency"),
    ("latency_p99_ms", "ms", _L, _LATENCY, "99th percentile inference latency"),
    # One-off times.
    ("load_time_ms", "ms", _L, _TIME, "time to load the model on the target"),
    ("compile_time_ms", "ms", _L, _TIME, "time to compile the model for the target"),
    # Memory.
    ("peak_memory_mb", "MB", _L, _MEMORY, "peak memory during inference"),
    ("load_peak_memory_mb", "MB", _L, _MEMORY, "peak memory while loading"),
    # Sizes.
    ("model_size_kb", "KB", _L, _SIZE, "the graphs' parameters at their deployed precision"),
    ("model_size_mb", "MB", _L, _SIZE, "the graphs' parameters at their deployed precision"),
    ("compiled_size_kb", "KB", _L, _SIZE, "size of the compiled target model(s) on disk"),
    ("compiled_size_mb", "MB", _L, _SIZE, "size of the compiled target model(s) on disk"),
    # Reproducibility and robustness.
    ("reproducible", "bool", _H, _QUALITY,
     "1 when quantizing and compiling again in a fresh process gave byte-identical artifacts"),
    ("adversarial_disagreement_rate", "ratio", _L, _QUALITY,
     "fraction of seed inputs for which a bounded perturbation makes FP32 and INT8 disagree"),
    ("adversarial_coverage", "ratio", _H, _QUALITY, "neuron coverage reached by the search"),
    ("fp32_robustness", "ratio", _H, _QUALITY,
     "fraction of seeds whose FP32 prediction no searched perturbation changed"),
    ("int8_robustness", "ratio", _H, _QUALITY,
     "fraction of seeds whose INT8 prediction no searched perturbation changed"),
    # Op placement.
    ("npu_fraction", "ratio", _H, _PLACEMENT, "fraction of graph nodes on the NPU"),
    ("npu_nodes", "nodes", _H, _PLACEMENT, "graph nodes placed on the NPU"),
    ("cpu_nodes", "nodes", _L, _PLACEMENT, "graph nodes that fell back to the CPU"),
)

for _fields in _BUILTINS:
    register_metric(MetricDef(*_fields))
