"""The reproducibility check as EdgePlug asks for it: a double run.

The run's own quantize + compile is the first run; ``repeats`` fresh processes (default one)
are the second (``run.reproduce``). They start as soon as the calibration inputs are known,
beside the run's own quantization (which uses one core: ``quantize.QUANTIZE_THREADS``), and
are waited for before the candidate's benchmark, so timing processes never share the
machine with them. Their artifacts are compared byte for byte with the run's.

On a deterministic host target a passing comparison is stored in the artifact cache
(``run.reuse``), keyed by everything the workers' output is a function of (FP32 graphs,
calibration data, quantization settings and config, device, target, code, versions) and
holding the sha256 of the run artifacts it compared. A later run with the same key and the
same artifacts reuses it, and the report names the run that computed it. A failing
comparison is never reused: the next run checks again. Remote targets never reuse.

On AI Hub, what a worker compiles depends on the QAIRT version (``repro_plan``).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgegate.artifacts import ArtifactCache, CacheEntry, sha256_file
from edgegate.progress import Progress
from edgegate.results import ArtifactKind, VariantResult
from edgegate.run.checks import CheckOutcome
from edgegate.run.context import RunContext
from edgegate.run.reproduce import ReproResult, Workers, compare_with_run, start_workers
from edgegate.run.reuse import ComputedBy, code_digest, runtime_versions, target_identity
from edgegate.run.runners import GraphInputs
from edgegate.run.stages import QuantizedFiles, aimet_config_id, batches_digest, computed_metrics
from edgegate.targets.aihub_toolchain import QAIRT_TAGS


@dataclass(frozen=True)
class ReproPlan:
    """Which fresh workers compile, and why compiled bytes cannot be judged (if they cannot)."""

    compile_in: tuple[bool, ...] = (True,)
    not_applicable: str | None = None
    note: str | None = None


def repro_plan(describe: Mapping[str, Any], repeats: int = 1) -> ReproPlan:
    """What the reproducibility check compiles for a target, from its ``describe()``.

    Host targets and boards compile on this host: every worker compiles. A target that
    compiles on a service under a QAIRT version (AI Hub) pays a compile job per graph and
    worker. With a pinned QAIRT the compiled bytes must match, so one fresh compile per graph
    (worker 1) is compared with this run's: more would cost as much again and add nothing
    the first does not show. Under ``latest``/``default`` AI Hub may resolve another QAIRT
    for each job, so equal bytes prove nothing and different bytes blame no one: no worker
    compiles (no job is submitted), quantization is still compared, and the check is
    reported not applicable, never passed."""
    if repeats < 1:
        raise ValueError(f"reproducibility repeats must be >= 1, got {repeats}")
    qairt = describe.get("qairt_version")
    if qairt is None:
        return ReproPlan((True,) * repeats)
    if qairt in QAIRT_TAGS:
        return ReproPlan(
            (False,) * repeats,
            not_applicable=f"QAIRT '{qairt}' is resolved by AI Hub for each job, so compiled artifacts are not "
                           "compared; pin qairt_version in the device file to check them",
        )
    return ReproPlan((True,) + (False,) * (repeats - 1),
                     note=f"compiled on AI Hub (QAIRT {qairt}) in fresh process 1 only, "
                          "one compile job per graph, against this run's compiled artifact")


def _primary(quantized: Mapping[str, QuantizedFiles], candidate: VariantResult) -> dict[str, dict[str, Any]]:
    return {
        g: {ArtifactKind.ENCODINGS.value: str(q.encodings), ArtifactKind.QDQ_ONNX.value: str(q.qdq_onnx),
            ArtifactKind.COMPILED.value: [str(f) for f in candidate.compiled[g].files]}
        for g, q in quantized.items()
    }


def _digests(artifacts: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {g: {k: [sha256_file(Path(f)) for f in v] if isinstance(v, list) else sha256_file(Path(v))
                for k, v in kinds.items()} for g, kinds in artifacts.items()}


class ReproducibilityCheck:
    """Metric ``reproducible`` (1/0) on the candidate: ``start`` after calibration, ``join``
    before the benchmark, ``finish`` once the candidate is compiled. ``stop`` on failure."""

    def __init__(
        self,
        ctx: RunContext,
        pipeline_path: str | Path,
        device: str | None,
        calibration: GraphInputs,
        fp32: Mapping[str, Path],
        cache: ArtifactCache,
        progress: Progress,
        repeats: int = 1,
    ) -> None:
        self.ctx, self.pipeline_path, self.device = ctx, pipeline_path, device
        self.calibration, self.cache, self.progress = calibration, cache, progress
        self.plan = repro_plan(ctx.target.describe(), repeats)
        self.reusable = ctx.target.deterministic
        self.key = self._key(fp32) if self.reusable else {}
        self.stored: CacheEntry | None = cache.find("reproducibility", self.key) if self.reusable else None
        self.workers: Workers | None = None
        self.work_dir: Path | None = None

    def _key(self, fp32: Mapping[str, Path]) -> dict[str, Any]:
        ctx = self.ctx
        return {
            "fp32": {g: sha256_file(p) for g, p in fp32.items()},
            "calibration": {g: batches_digest(batches) for g, batches in self.calibration.items()},
            "quantization": ctx.spec.quantization.model_dump(mode="json", exclude={"verify_reproducible"}),
            "aimet_config": aimet_config_id(ctx),
            "graphs": {g: spec.model_dump(mode="json") for g, spec in ctx.spec.model.graphs.items()},
            "device": ctx.device.model_dump(mode="json"),
            "target": target_identity(ctx.target),
            "compile_in": list(self.plan.compile_in),
            "code": code_digest(),
            "versions": runtime_versions(),
        }

    def _what(self) -> str:
        n = len(self.plan.compile_in)
        return (f"{'quantize + compile' if any(self.plan.compile_in) else 'quantize'} again in "
                f"{n} fresh process{'es' if n > 1 else ''}")

    def start(self, work_dir: Path) -> None:
        """Start the fresh workers, unless a stored comparison may be reused."""
        self.work_dir = work_dir
        if self.stored is not None or self.workers is not None:
            return
        self.progress.info(f"verify reproducibility: {self._what()}, beside this run")
        self.workers = start_workers(self.pipeline_path, self.device, self.calibration, work_dir,
                                     compile_in=self.plan.compile_in)

    def join(self) -> None:
        """Wait for the workers (before the benchmark: timings never share the machine)."""
        if self.workers is not None and not self.workers.finished:
            with self.progress.stage("verify reproducibility: wait for the fresh process"):
                self.workers.wait()

    def stop(self) -> None:
        if self.workers is not None:
            self.workers.stop()

    def finish(
        self, quantized: Mapping[str, QuantizedFiles], candidate: VariantResult, me: ComputedBy
    ) -> CheckOutcome:
        primary = _primary(quantized, candidate)
        digests = _digests(primary)
        reused: ComputedBy | None = None
        if self.stored is not None and self.stored.meta.get("primary") == digests:
            res = ReproResult(**self.stored.meta["result"])
            reused = ComputedBy.from_dict(self.stored.meta["computed_by"])
        else:
            if self.workers is None:  # the stored comparison was of other artifacts: check now
                if self.work_dir is None:
                    raise RuntimeError("ReproducibilityCheck.finish before start")
                self.stored = None
                self.start(self.work_dir)
            workers = self.workers
            assert workers is not None  # started just above
            self.join()
            res = compare_with_run(primary, workers.wait())
            if self.reusable and res.reproducible:
                self._store(res, digests, me)
            self._keep_work(candidate)
        summary: dict[str, Any] = {**res.to_dict(), "fresh_processes": len(self.plan.compile_in)}
        if self.plan.note:
            summary["note"] = self.plan.note
        if reused is not None:
            summary["reused_from"] = reused.to_dict()
        if self.plan.not_applicable is not None:
            summary["not_applicable"] = self.plan.not_applicable
            if res.reproducible:  # nothing failed, and the part that matters was not judged: no pass
                return CheckOutcome({}, {**summary, "reproducible": None})
        return CheckOutcome(computed_metrics({"reproducible": 1.0 if res.reproducible else 0.0}), summary)

    def _keep_work(self, candidate: VariantResult) -> None:
        """The workers' files (logs, their artifacts) go to the candidate's run directory."""
        if self.work_dir is not None and candidate.run_dir is not None and self.work_dir.is_dir():
            shutil.move(str(self.work_dir), str(candidate.run_dir / "reproduce"))

    def _store(self, res: ReproResult, digests: Mapping[str, Any], me: ComputedBy) -> None:
        def build(_: Path) -> dict[str, Any]:  # everything is in the entry's manifest
            return {"result": res.to_dict(), "primary": dict(digests), "computed_by": me.to_dict()}

        # replaces a stored comparison of other artifacts (refresh), so the next run reuses this one
        ArtifactCache(self.cache.root, refresh=True).get_or_build("reproducibility", self.key, build)
