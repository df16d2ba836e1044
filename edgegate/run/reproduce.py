"""Reproducibility: quantize and compile again in fresh processes, compare bytes.

Worker processes (``python -m edgegate.run.reproduce REQUEST.json``; a run starts one, the
second half of EdgePlug's double run, see ``run.repro_check``) each quantize every graph
with the run's settings and the same calibration batches, then compile the result for the
run's target. Their encodings, quantized models and compiled artifacts are
compared by sha256 with each other and with the run's own artifacts. On a mismatch the
result names the first artifact that differs and, inside it, the first encoding or tensor.
A worker may be asked not to compile (``compile_in``: a remote compile costs a job on the
service, see ``run.repro_check.repro_plan``); its compiled artifacts are then not compared.

Known causes fixed elsewhere (targets/qnn_compile.py): ONNX Runtime names the QNN partition
after a hash of the model's path, so EdgeGate compiles from the model's bytes; and QNN's
context binary depends on what the process compiled before, so every emulator compile runs
in a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    """Export, quantize and (unless told not to) compile every graph through the run's own
    stage functions, into a fresh artifact cache: what the run did, in a fresh process. The
    cache entries matter beyond the bytes: AI Hub uploads a quantize entry as AIMET's export."""
    from edgegate.artifacts import ArtifactCache
    from edgegate.progress import Progress
    from edgegate.run.context import load_context
    from edgegate.run.stages import compile_graphs, export_graphs, quantize_graphs
    from edgegate.targets.base import Variant

    home = Path(request["home"])
    ctx = load_context(request["pipeline"], device=request.get("device"), home=home)
    calibration: dict[str, list[tuple[np.ndarray, ...]]] = {}
    for g in ctx.graphs:
        with np.load(request["calibration"][g.name]) as data:
            n = int(data["count"])
            batches = [tuple(data[f"b{i}_{j}"] for j in range(len(g.input_names))) for i in range(n)]
        calibration[g.name] = batches[::-1] if request.get("perturb") == "reverse-calibration" else batches
    cache = ArtifactCache(home / "artifacts")
    quantized = quantize_graphs(ctx, export_graphs(ctx, cache), calibration, cache, Progress(quiet=True))
    manifest: dict[str, Any] = {
        g: {ArtifactKind.ENCODINGS.value: str(q.encodings), ArtifactKind.QDQ_ONNX.value: str(q.qdq_onnx)}
        for g, q in quantized.items()
    }
    if request.get("compile", True):
        compiled = compile_graphs(ctx.target, {g: q.qdq_onnx for g, q in quantized.items()}, cache, Variant.INT8)
        for g, c in compiled.items():
            manifest[g][_COMPILED] = [str(f) for f in c.files]
    out = Path(request["out"])
    out.mkdir(parents=True, exist_ok=True)
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


class Workers:
    """Fresh worker processes started side by side (``start_workers``); ``wait`` collects
    their manifests, in order."""

    def __init__(self, procs: list[tuple[subprocess.Popen[bytes], Path, Any]], timeout_s: float) -> None:
        self._procs = procs
        self._timeout_s = timeout_s
        self._manifests: list[dict[str, Any]] | None = None

    @property
    def finished(self) -> bool:
        return self._manifests is not None

    def wait(self) -> list[dict[str, Any]]:
        if self._manifests is not None:
            return self._manifests
        manifests = []
        try:
            for proc, out, log in self._procs:
                try:
                    rc = proc.wait(timeout=self._timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = -9
                log.close()
                if rc != 0 or not (out / "manifest.json").is_file():
                    tail = Path(log.name).read_text().strip().splitlines()[-1:] or ["no output"]
                    raise TargetError(f"reproducibility worker failed (exit {rc}): {tail[0]}")
                manifests.append(json.loads((out / "manifest.json").read_text()))
        finally:
            self.stop()
        self._manifests = manifests
        return manifests

    def stop(self) -> None:
        """Kill the workers still running (the run failed or was interrupted)."""
        for proc, _, log in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


def start_workers(
    pipeline: str | Path,
    device: str | None,
    calibration: Mapping[str, list[tuple[np.ndarray, ...]]],
    work_dir: Path,
    *,
    compile_in: Sequence[bool] = (True,),
    perturb: Mapping[int, str] | None = None,
    timeout_s: float = 1800,
) -> Workers:
    """One fresh worker process per entry of ``compile_in`` (which of them also compile for
    the target), side by side; ``perturb``: worker index -> a perturbation (tests)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    calib = _save_calibration(calibration, work_dir)
    procs = []
    for i, compiles in enumerate(compile_in):
        out = work_dir / f"worker{i}"
        req = {"pipeline": str(pipeline), "device": device, "calibration": calib, "out": str(out),
               "home": str(work_dir / f"home{i}"), "perturb": (perturb or {}).get(i), "compile": compiles}
        req_path = work_dir / f"request{i}.json"
        req_path.write_text(json.dumps(req))
        log = open(work_dir / f"worker{i}.log", "w")
        # A worker runs beside the run's own quantize + compile (or another worker): one thread
        # each, or their OpenMP pools spin against each other (seen here: 3 minutes instead of
        # 15 s on 2 cores). Quantization runs on one torch thread in the run and here alike
        # (quantize.QUANTIZE_THREADS): more threads sum calibration floats in another order
        # and move scales by an ulp.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs.append((subprocess.Popen([sys.executable, "-m", "edgegate.run.reproduce", str(req_path)],
                                       stdout=log, stderr=subprocess.STDOUT, env=env), out, log))
    return Workers(procs, timeout_s)


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
    """Compare artifact sets {graph: {encodings, qdq_onnx, compiled: [...]}} labelled by origin;
    the first set that has a kind is the reference for it, and a set without it (a worker that
    did not compile) is left out of that kind's comparisons."""
    result = ReproResult(reproducible=True)
    for graph in sets[0][1]:
        for kind in ARTIFACT_ORDER:
            having = [(label, s) for label, s in sets if kind in s[graph]]
            if len(having) < 2:
                continue
            (ref_label, ref), others = having[0], having[1:]
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


def compare_with_run(primary: Mapping[str, Any] | None, manifests: Sequence[Mapping[str, Any]]) -> ReproResult:
    """This run's artifacts (when given) against every fresh process's."""
    sets: list[tuple[str, Mapping[str, Any]]] = [("this run", primary)] if primary is not None else []
    sets += [(f"fresh process {i}", m) for i, m in enumerate(manifests, 1)]
    return compare_artifacts(sets)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
