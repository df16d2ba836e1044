"""Reproducibility: quantize and compile twice in fresh processes, compare bytes.

Two worker processes (``python -m edgegate.run.reproduce REQUEST.json``) each quantize every
graph with the run's settings and the same calibration batches, then compile the result
for the run's target. Their encodings, quantized models and compiled artifacts are
compared by sha256 with each other and with the run's own artifacts. On a mismatch the
result names the first artifact that differs and, inside it, the first encoding or tensor.

Known cause fixed elsewhere: ONNX Runtime names the QNN partition after a hash of the
model's path, so EdgeGate compiles from the model's bytes (targets/local.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.artifacts import sha256_file
from edgegate.errors import TargetError
from edgegate.results import ArtifactKind

# What is compared, in this order; also the keys of a {graph: {kind: path(s)}} artifact set.
ARTIFACT_ORDER = (ArtifactKind.ENCODINGS.value, ArtifactKind.QDQ_ONNX.value, ArtifactKind.COMPILED.value)
_COMPILED = ArtifactKind.COMPILED.value


@dataclass
class ReproResult:
    reproducible: bool
    checked: list[dict[str, Any]] = field(default_factory=list)  # one row per artifact compared
    first_difference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"reproducible": self.reproducible, "first_difference": self.first_difference, "checked": self.checked}


# ----------------------------------------------------------------------------- worker


def _worker(request: Mapping[str, Any]) -> dict[str, Any]:
    from edgegate.run.context import load_context
    from edgegate.run.models import load_torch_model
    from edgegate.run.quantize import quantize_graph
    from edgegate.run.stages import quantize_settings

    ctx = load_context(request["pipeline"], device=request.get("device"), home=Path(request["home"]))
    settings = quantize_settings(ctx)
    out = Path(request["out"])
    manifest: dict[str, Any] = {}
    for g in ctx.graphs:
        with np.load(request["calibration"][g.name]) as data:
            n = int(data["count"])
            batches = [tuple(data[f"b{i}_{j}"] for j in range(len(g.input_names))) for i in range(n)]
        if request.get("perturb") == "reverse-calibration":
            batches = batches[::-1]
        gdir = out / g.name
        q = quantize_graph(load_torch_model(g), g.input_names, g.output_names, batches, settings, gdir, g.name)
        compiled = ctx.target.compile(g.name, q.qdq_onnx, gdir / "compiled")
        manifest[g.name] = {
            ArtifactKind.ENCODINGS.value: str(q.encodings),
            ArtifactKind.QDQ_ONNX.value: str(q.qdq_onnx),
            _COMPILED: [str(f) for f in compiled.files],
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: Sequence[str]) -> int:
    _worker(json.loads(Path(argv[0]).read_text()))
    return 0


# ----------------------------------------------------------------------------- parent


def _save_calibration(calibration: Mapping[str, list[tuple[np.ndarray, ...]]], d: Path) -> dict[str, str]:
    paths = {}
    for g, batches in calibration.items():
        arrays = {f"b{i}_{j}": a for i, b in enumerate(batches) for j, a in enumerate(b)}
        p = d / f"{g}_calibration.npz"
        np.savez(p, count=np.asarray(len(batches)), **arrays)
        paths[g] = str(p)
    return paths


def run_workers(
    pipeline: str | Path,
    device: str | None,
    calibration: Mapping[str, list[tuple[np.ndarray, ...]]],
    work_dir: Path,
    *,
    perturb_second: str | None = None,
    timeout_s: float = 1800,
) -> list[dict[str, Any]]:
    """Two fresh worker processes, side by side; returns their manifests."""
    work_dir.mkdir(parents=True, exist_ok=True)
    calib = _save_calibration(calibration, work_dir)
    procs = []
    for i, perturb in enumerate((None, perturb_second)):
        out = work_dir / f"worker{i}"
        req = {"pipeline": str(pipeline), "device": device, "calibration": calib, "out": str(out),
               "home": str(work_dir / f"home{i}"), "perturb": perturb}
        req_path = work_dir / f"request{i}.json"
        req_path.write_text(json.dumps(req))
        log = open(work_dir / f"worker{i}.log", "w")
        # The two workers run side by side: one thread each, or their OpenMP pools spin against
        # each other (seen here: 3 minutes instead of 15 s on 2 cores). Quantization runs on one
        # torch thread in the run and here alike (quantize.QUANTIZE_THREADS): more threads sum
        # calibration floats in another order and move scales by an ulp.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs.append((subprocess.Popen([sys.executable, "-m", "edgegate.run.reproduce", str(req_path)],
                                       stdout=log, stderr=subprocess.STDOUT, env=env), out, log))
    manifests = []
    for proc, out, log in procs:
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        log.close()
        if rc != 0 or not (out / "manifest.json").is_file():
            tail = Path(log.name).read_text().strip().splitlines()[-1:] or ["no output"]
            raise TargetError(f"reproducibility worker failed (exit {rc}): {tail[0]}")
        manifests.append(json.loads((out / "manifest.json").read_text()))
    return manifests


def first_json_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Path and values of the first place two JSON documents differ."""
    if type(a) is not type(b):
        return f"{path or '<root>'}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: present in only one"
            d = first_json_difference(a[k], b[k], f"{path}.{k}" if path else str(k))
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            label = x.get("name") if isinstance(x, dict) and "name" in x else i
            d = first_json_difference(x, y, f"{path}[{label!r}]" if isinstance(label, str) else f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} vs {b!r}"


def first_onnx_difference(a: Path, b: Path) -> str | None:
    """The first initializer (then node) that differs between two ONNX files."""
    import onnx
    from onnx import numpy_helper

    ma, mb = onnx.load(str(a)), onnx.load(str(b))
    inits_b = {t.name: t for t in mb.graph.initializer}
    for t in ma.graph.initializer:
        other = inits_b.get(t.name)
        if other is None:
            return f"tensor '{t.name}' only in the first"
        x, y = numpy_helper.to_array(t), numpy_helper.to_array(other)
        if x.shape != y.shape or not np.array_equal(x, y):
            diff = np.abs(x.astype(np.float64) - y.astype(np.float64)) if x.shape == y.shape else None
            extra = f", max |diff| {diff.max():.3g}" if diff is not None and diff.size else ""
            return f"tensor '{t.name}' differs{extra}"
    for i, (na, nb) in enumerate(zip(ma.graph.node, mb.graph.node)):
        if na.SerializeToString() != nb.SerializeToString():
            return f"node {i} '{na.name}' ({na.op_type}) differs"
    return None


def compare_artifacts(sets: Sequence[tuple[str, Mapping[str, Any]]]) -> ReproResult:
    """Compare artifact sets {graph: {encodings, qdq_onnx, compiled: [...]}} labelled by origin."""
    result = ReproResult(reproducible=True)
    (ref_label, ref), others = sets[0], sets[1:]
    for graph in ref:
        for kind in ARTIFACT_ORDER:
            ref_files = ref[graph][kind] if kind == _COMPILED else [ref[graph][kind]]
            for label, other in others:
                other_files = other[graph][kind] if kind == _COMPILED else [other[graph][kind]]
                for fa, fb in zip(ref_files, other_files):
                    pa, pb = Path(fa), Path(fb)
                    sa, sb = sha256_file(pa), sha256_file(pb)
                    row = {"graph": graph, "artifact": kind, "file": pa.name, "compared": f"{ref_label} vs {label}",
                           "sha256": [sa, sb], "equal": sa == sb}
                    result.checked.append(row)
                    if sa != sb and result.reproducible:
                        result.reproducible = False
                        where = None
                        if kind == ArtifactKind.ENCODINGS.value:
                            where = first_json_difference(json.loads(pa.read_text()), json.loads(pb.read_text()))
                        elif pa.suffix == ".onnx":
                            try:
                                where = first_onnx_difference(pa, pb)
                            except Exception:  # noqa: BLE001 - a context model may not load without its binary
                                where = None
                        result.first_difference = (
                            f"{graph}: {kind} {pa.name} differs ({ref_label} vs {label})"
                            + (f": first difference at {where}" if where else "")
                        )
    return result


def verify_reproducible(
    pipeline: str | Path,
    device: str | None,
    calibration: Mapping[str, list[tuple[np.ndarray, ...]]],
    primary: Mapping[str, Any] | None,
    *,
    work_dir: Path | None = None,
    perturb_second: str | None = None,
) -> ReproResult:
    """Quantize + compile twice in fresh processes and compare with each other and `primary`
    (this run's own artifacts, in the same {graph: {...}} shape) when given."""
    work = work_dir or Path(tempfile.mkdtemp(prefix="eg-repro-"))
    a, b = run_workers(pipeline, device, calibration, work, perturb_second=perturb_second)
    sets: list[tuple[str, Mapping[str, Any]]] = []
    if primary is not None:
        sets.append(("this run", primary))
    sets += [("fresh process 1", a), ("fresh process 2", b)]
    return compare_artifacts(sets)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
