"""A variant's own files in its run directory, and reading them back.

``bench_inputs_<graph>.npz`` (what the benchmark fed each graph: ``compare --rebench``
times the run again on it), ``predictions.json`` (every prediction with its arrays' shape
and dtype, so they load back exactly: a later run's FP32 reference) and ``per_sample.json``
(scorer name -> per-sample records: what paired statistics resample).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgegate.artifacts import atomic_write
from edgegate.errors import EnvironmentFailure
from edgegate.packs.adapters import Prediction
from edgegate.packs.scorers import Scorer, ScoreResult
from edgegate.results import PER_SAMPLE_FILE, PREDICTIONS_FILE, ArtifactKind

if TYPE_CHECKING:
    from edgegate.packs.sample import Sample

# (kind, graph or None, path): an artifact to record with a run
ArtifactFile = tuple[ArtifactKind, "str | None", Path]


def encode_arrays(p: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A prediction as JSON, each array with its shape and dtype, so it loads back exactly."""
    out = {}
    for k, v in p.items():
        a = np.asarray(v)
        out[k] = {"shape": list(a.shape), "dtype": a.dtype.str, "data": a.ravel().tolist()}
    return out


def decode_arrays(d: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """``encode_arrays`` read back."""
    return {k: np.asarray(a["data"], dtype=np.dtype(a["dtype"])).reshape(a["shape"]) for k, a in d.items()}


def predictions_json(samples: Sequence[Sample], preds: Sequence[Prediction]) -> list[dict[str, Any]]:
    """Predictions with each array's shape and dtype, so they load back exactly."""
    return [{"id": s.id, "sha256": s.sha256, "arrays": encode_arrays(p)} for s, p in zip(samples, preds)]


def load_predictions(
    path: Path, samples: Sequence[Sample], sha256: str | None = None
) -> list[dict[str, np.ndarray]] | None:
    """The stored predictions for exactly these samples, or None if they do not match:
    missing, unreadable, not the `sha256` recorded when they were written, or made on
    other samples. None means "recompute", never a crash of every later run."""
    data = read_recorded(path, sha256)
    if data is None:
        return None
    try:
        by_id = {d["id"]: d for d in json.loads(data)}
        out = []
        for s in samples:
            d = by_id.get(s.id)
            if d is None or d.get("sha256") != s.sha256:
                return None
            out.append(decode_arrays(d["arrays"]))
    except (ValueError, KeyError, TypeError):
        return None
    return out


def read_recorded(path: Path, sha256: str | None) -> bytes | None:
    """A recorded file's bytes, or None when it is missing or differs from its recorded
    `sha256` (a file cut short by a full disk or changed since: as good as missing)."""
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        return None
    return data


def write_variant_outputs(
    d: Path,
    bench_inputs: Mapping[str, Mapping[str, np.ndarray]],
    graphs: Sequence[str],
    samples: Sequence[Sample],
    predictions: Sequence[Prediction],
    scorers: Sequence[Scorer],
    scores: Sequence[ScoreResult],
) -> list[ArtifactFile]:
    """Write a variant's files into its run directory (each atomically: a later run reads
    them, and a crash or a full disk must not leave half a file under the final name);
    returns them as artifacts to record. `d` is the run's own directory."""
    files: list[ArtifactFile] = []
    for g in graphs:
        path = d / f"bench_inputs_{g}.npz"
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in bench_inputs[g].items()})
        atomic_write(path, buf.getvalue())
        files.append((ArtifactKind.BENCH_INPUTS, g, path))
    pred_path = d / PREDICTIONS_FILE
    atomic_write(pred_path, json.dumps(predictions_json(samples, predictions)))
    per_sample = d / PER_SAMPLE_FILE
    atomic_write(per_sample, json.dumps({sc.name: sr.per_sample for sc, sr in zip(scorers, scores)}, default=str))
    files += [(ArtifactKind.PREDICTIONS, None, pred_path), (ArtifactKind.PER_SAMPLE_SCORES, None, per_sample)]
    return files


def read_per_sample(d: Path) -> dict[str, list[dict[str, Any]]]:
    """scorer name -> per-sample records of the run whose directory is `d`."""
    path = d / PER_SAMPLE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EnvironmentFailure(f"{path}: per-sample records unreadable ({exc}); was the disk full?") from None
    if not isinstance(data, dict):
        raise EnvironmentFailure(f"{path}: per-sample records are not a JSON object")
    return data
