"""A variant's own files in its run directory, and reading them back.

``bench_inputs_<graph>.npz`` (what the benchmark fed each graph: ``compare --rebench``
times the run again on it), ``predictions.json`` (every prediction with its arrays' shape
and dtype, so they load back exactly: a later run's FP32 reference) and ``per_sample.json``
(scorer name -> per-sample records: what paired statistics resample).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgegate.packs.adapters import Prediction
from edgegate.packs.scorers import Scorer, ScoreResult
from edgegate.results import PER_SAMPLE_FILE, PREDICTIONS_FILE, ArtifactKind, run_dir

if TYPE_CHECKING:
    from edgegate.packs.sample import Sample

# (kind, graph or None, path): an artifact to record with a run
ArtifactFile = tuple[ArtifactKind, "str | None", Path]


def predictions_json(samples: Sequence[Sample], preds: Sequence[Prediction]) -> list[dict[str, Any]]:
    """Predictions with each array's shape and dtype, so they load back exactly."""
    out = []
    for s, p in zip(samples, preds):
        arrays = {}
        for k, v in p.items():
            a = np.asarray(v)
            arrays[k] = {"shape": list(a.shape), "dtype": a.dtype.str, "data": a.ravel().tolist()}
        out.append({"id": s.id, "sha256": s.sha256, "arrays": arrays})
    return out


def load_predictions(path: Path, samples: Sequence[Sample]) -> list[dict[str, np.ndarray]] | None:
    """The stored predictions for exactly these samples, or None if they do not match."""
    if not path.is_file():
        return None
    by_id = {d["id"]: d for d in json.loads(path.read_text())}
    out = []
    for s in samples:
        d = by_id.get(s.id)
        if d is None or d.get("sha256") != s.sha256:
            return None
        out.append(
            {k: np.asarray(a["data"], dtype=np.dtype(a["dtype"])).reshape(a["shape"]) for k, a in d["arrays"].items()}
        )
    return out


def write_variant_outputs(
    home: Path,
    run_id: int,
    bench_inputs: Mapping[str, Mapping[str, np.ndarray]],
    graphs: Sequence[str],
    samples: Sequence[Sample],
    predictions: Sequence[Prediction],
    scorers: Sequence[Scorer],
    scores: Sequence[ScoreResult],
) -> list[ArtifactFile]:
    """Write a variant's files into its run directory; returns them as artifacts to record."""
    d = run_dir(home, run_id)
    d.mkdir(parents=True, exist_ok=True)
    files: list[ArtifactFile] = []
    for g in graphs:
        path = d / f"bench_inputs_{g}.npz"
        np.savez(path, **{k: np.asarray(v) for k, v in bench_inputs[g].items()})
        files.append((ArtifactKind.BENCH_INPUTS, g, path))
    pred_path = d / PREDICTIONS_FILE
    pred_path.write_text(json.dumps(predictions_json(samples, predictions)))
    per_sample = d / PER_SAMPLE_FILE
    per_sample.write_text(json.dumps({sc.name: sr.per_sample for sc, sr in zip(scorers, scores)}, default=str))
    files += [(ArtifactKind.PREDICTIONS, None, pred_path), (ArtifactKind.PER_SAMPLE_SCORES, None, per_sample)]
    return files


def read_per_sample(home: Path, run_id: int) -> dict[str, list[dict[str, Any]]]:
    """scorer name -> per-sample records of a run of this home."""
    return json.loads((run_dir(home, run_id) / PER_SAMPLE_FILE).read_text())
