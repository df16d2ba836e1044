"""The values a run produces: what the orchestrator returns and every consumer reads.

A leaf below the runner, so that the report, the evidence bundle, the fleet and the
regression API read a run's results without importing the code that produced them.
Results are values: built once, when everything they hold is known, and not changed
afterwards (``dataclasses.replace`` makes a new one).

Also here: the names a run's outputs are stored under, spelled once. ``ArtifactKind``
values are what the database's ``artifacts.kind`` column holds (databases written before
this module still read); ``run_dir`` is where a run's own files go.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgegate.gates import GateResult
from edgegate.metrics import Measurement
from edgegate.stats import LatencySummary
from edgegate.targets.base import CompiledGraph, Variant


class ArtifactKind(str, Enum):
    """What a recorded artifact is (the database's ``artifacts.kind``)."""

    FP32_ONNX = "fp32_onnx"  # the FP32 graph exported from the model
    QDQ_ONNX = "qdq_onnx"  # AIMET's quantized graph (QuantizeLinear/DequantizeLinear)
    ENCODINGS = "encodings"  # AIMET's encodings JSON
    ENCODINGS_ONNX = "encodings_onnx"  # the plain ONNX the encodings refer to
    COMPILED = "compiled"  # the target's compiled files (the artifact a session opens first)
    BENCH_INPUTS = "bench_inputs"  # what the benchmark fed a graph (`compare --rebench` reuses it)
    PREDICTIONS = "predictions"  # every eval sample's prediction
    PER_SAMPLE_SCORES = "per_sample_scores"  # scorer name -> per-sample records
    ADVERSARIAL_PACK = "adversarial_pack"  # the manifest of the adversarial findings' PromptPack


# File names inside a run's directory.
PREDICTIONS_FILE = "predictions.json"
PER_SAMPLE_FILE = "per_sample.json"


# The run row's details field holding the run's directory key.
RUN_KEY_FIELD = "run_key"

# (home, run id) -> key of the runs this process started: the steps after a variant's
# row exists find its directory by the id they hold.


def new_run_key() -> str:
    """A fresh, random directory key for a run about to start (recorded in its row)."""
    return uuid.uuid4().hex[:16]


def open_run_dir(home: Path, run_id: int, run_key: str) -> Path:
    """Create run `run_id`'s directory (it must not exist: a run never shares its files)
    and remember its key for ``run_dir``."""
    d = run_dir(home, run_id, run_key)
    d.mkdir(parents=True, exist_ok=False)
    return d


def run_dir(home: Path, run_id: int, run_key: str) -> Path:
    """Where a run keeps its own files (benchmark work, predictions, per-sample records):
    ``runs/<run id>-<run key>``. Run ids restart at 1 with a new database while the home
    stays, so the id alone could name another run's directory; the random key (in the run
    row's details) cannot. A measured variant carries its directory (``VariantResult.run_dir``)."""
    return Path(home) / "runs" / f"{run_id}-{run_key}"


def artifacts_of_kind(artifacts: Iterable[Mapping[str, Any]], kind: ArtifactKind) -> list[Mapping[str, Any]]:
    """The recorded artifacts (rows ``{kind, graph, path, sha256}``) of one kind, in order."""
    return [a for a in artifacts if a["kind"] == kind.value]


def first_artifact(artifacts: Iterable[Mapping[str, Any]], kind: ArtifactKind) -> Mapping[str, Any] | None:
    """The first recorded artifact of `kind`, or None."""
    found = artifacts_of_kind(artifacts, kind)
    return found[0] if found else None


@dataclass(frozen=True)
class VariantResult:
    """One variant (FP32 baseline or INT8 candidate) as measured, or as read back from golden."""

    variant: Variant
    run_id: int
    target: dict[str, Any]  # the target's describe()
    metrics: dict[str, Measurement]
    latency: dict[str, LatencySummary] = field(default_factory=dict)  # per graph
    compiled: dict[str, CompiledGraph] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # {kind, graph, path, sha256}
    memory_method: str = ""
    calls_per_image: dict[str, float] = field(default_factory=dict)
    from_golden: bool = False
    # what ran the graphs (edgegate.toolchain): compiler/runtime versions, the device that ran;
    # None for a golden stored before toolchains were recorded
    toolchain: dict[str, str | None] | None = None
    # the run's own directory (its files, the checks' work); None for a golden read back
    run_dir: Path | None = None
    run_key: str | None = None  # names run_dir; ids repeat across databases, keys do not
    # results taken from the artifact cache instead of computed (run.reuse): what -> the run
    # that computed it ({run_id, run_key, pipeline, device, at})
    reused: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineResult:
    """One run: both variants, the gates, the verdict, and where its report and evidence went."""

    pipeline: str
    device: dict[str, Any]
    pack: dict[str, Any]
    config_digest: str
    baseline: VariantResult
    candidate: VariantResult
    golden_run_id: int
    gates: list[GateResult]
    passed: bool
    report_path: Path | None = None
    notes: Sequence[str] = ()
    # the resolved {"pipeline", "device"} config that config_digest is the digest of
    config: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None  # UTC ISO 8601
    finished_at: str | None = None
    evidence_path: Path | None = None
    evidence_status: str = ""  # the bundle, or why there is none
    reproducibility: dict[str, Any] | None = None  # edgegate.run.reproduce.ReproResult.to_dict()
    adversarial: dict[str, Any] | None = None  # edgegate.run.adversarial.AdversarialResult.summary()
    # The report as run_pipeline built it (report.run_report.build_report), with the notes of
    # the evidence step that came after the JSON file was written: what the CLI prints.
    report: dict[str, Any] | None = None
