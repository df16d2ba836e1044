"""The optional checks of a run, beyond measuring the two variants.

* the reproducibility check (``--verify-reproducible`` or ``quantization.verify_reproducible``)
  is ``run.repro_check``: it runs beside the run, from calibration to the benchmark.
* ``search_adversarial`` (the pipeline's ``adversarial`` section): a differential search for
  inputs FP32 and INT8 disagree on; metrics ``adversarial_*`` / ``*_robustness`` and a
  PromptPack of the findings.
* ``strict_gates`` (``--strict``): gates on quality metrics hold on the conservative end of the
  candidate's 95% bootstrap CI.

Each returns values (metrics, a summary for the report); the orchestrator stores them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgegate.artifacts import ArtifactCache, sha256_file
from edgegate.errors import InputError
from edgegate.gates import Gate, GateResult, GateStatus, evaluate_gates
from edgegate.metrics import Direction, Measurement, get_metric
from edgegate.packs.adapters import SearchableAdapter
from edgegate.packs.sample import Sample
from edgegate.progress import Progress
from edgegate.results import ArtifactKind, VariantResult
from edgegate.run.adversarial import (
    AdversarialResult,
    AdversarialSettings,
    load_result,
    save_result,
    search,
    write_failure_pack,
)
from edgegate.run.context import RunContext
from edgegate.run.models import load_torch_model
from edgegate.run.outputs import read_per_sample
from edgegate.run.reuse import (
    ComputedBy,
    adapter_key,
    compiled_digests,
    samples_digest,
    target_identity,
)
from edgegate.run.runners import cpu_runner, target_runner
from edgegate.run.stages import combined_aggregate, computed_metrics


@dataclass(frozen=True)
class CheckOutcome:
    """What a check adds to the candidate: metrics, a section of the report, and (maybe) a
    file to record as an artifact of the candidate's run."""

    metrics: dict[str, Measurement]
    summary: dict[str, Any]
    artifact: tuple[ArtifactKind, Path] | None = None
    # metric -> why the check could not measure it: a gate on it is n/a with that reason
    # (``gates_not_applicable``), neither a pass nor "missing".
    not_applicable: Mapping[str, str] = dataclasses.field(default_factory=dict)


ADVERSARIAL_METRICS = ("adversarial_disagreement_rate", "adversarial_coverage", "fp32_robustness", "int8_robustness")



def _own_dir(candidate: VariantResult) -> Path:
    """The candidate's own run directory (the checks write their work there)."""
    if candidate.run_dir is None:
        raise ValueError(f"run {candidate.run_id} has no run directory of its own (a golden read back)")
    return candidate.run_dir

def gates_not_applicable(results: Sequence[GateResult], checks: Sequence[CheckOutcome | None]) -> list[GateResult]:
    """Gate results with every gate on a metric a check could not measure turned n/a, with
    the check's reason (e.g. an adversarial search stopped by its time cap): the verdict then
    neither passes nor fails on a number that does not mean what the gate's threshold means."""
    reasons = {m: why for c in checks if c is not None for m, why in c.not_applicable.items()}
    return [
        dataclasses.replace(r, status=GateStatus.NOT_APPLICABLE, value=None, limit=None, source=None,
                            reason=reasons[r.gate.metric])
        if r.gate.metric in reasons else r
        for r in results
    ]


def search_adversarial(
    ctx: RunContext,
    fp32: Mapping[str, Path],
    qdq: Mapping[str, Path],
    candidate: VariantResult,
    eval_samples: Sequence[Sample],
    progress: Progress,
    cache: ArtifactCache,
    me: ComputedBy,
) -> CheckOutcome | None:
    """Metrics adversarial_* / *_robustness on the candidate, and a PromptPack of findings;
    None when the pipeline has no ``adversarial`` section. `me`: this run, as the computer of
    a search a later run may reuse."""
    adv = ctx.spec.adversarial
    if adv is None:
        return None
    adapter = ctx.adapter
    if not isinstance(adapter, SearchableAdapter):
        raise InputError(
            f"{ctx.spec.source_path}: adversarial: adapter {ctx.spec.model.adapter} has no "
            "decision_margin/disagree, so it cannot be searched; remove the section"
        )
    settings = AdversarialSettings(
        seeds=adv.seeds, epsilon=adv.epsilon, steps=adv.steps, step_size=adv.step_size,
        transforms=tuple(adv.transforms), time_budget_s=adv.time_budget_s, seed=adv.seed,
    )
    on_target = adv.candidate == "target"
    where = ctx.target.name if on_target else "QDQ graphs on ONNX Runtime CPU"

    def compute() -> AdversarialResult:
        modules = {g.name: load_torch_model(g) for g in ctx.graphs}
        int8_run = target_runner(ctx.target, candidate.compiled) if on_target else cpu_runner(qdq)
        with progress.stage(f"adversarial search: {min(adv.seeds, len(eval_samples))} seeds, INT8 on {where}"):
            return search(adapter, eval_samples, modules, cpu_runner(fp32), int8_run, settings)

    # Deterministic (seeds and steps, host CPU or a deterministic target): reused when every
    # input is the same (run.reuse). A search its time cap stopped is never stored.
    reused = None
    if on_target and not ctx.target.deterministic:
        res = compute()
    else:
        key = {
            "fp32": {g: sha256_file(p) for g, p in fp32.items()},
            "int8": ({"target": target_identity(ctx.target), "compiled": compiled_digests(candidate.compiled)}
                     if on_target else {g: sha256_file(p) for g, p in qdq.items()}),
            "samples": samples_digest(eval_samples[: adv.seeds]),
            "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "time_budget_s"},
            **adapter_key(ctx.spec, [adapter]),
        }
        stored = cache.find("adversarial", key)
        if stored is not None:
            res, reused = load_result(stored.path), ComputedBy.from_dict(stored.meta["computed_by"])
            progress.info(f"adversarial search: reused from run {reused.run_id} (same graphs, seeds and settings; "
                          "--no-cache searches again)")
        else:
            res = compute()
            if res.stopped is None:
                def build(d: Path, res: AdversarialResult = res) -> dict[str, Any]:
                    save_result(res, d)
                    return {"computed_by": me.to_dict()}

                cache.get_or_build("adversarial", key, build)
    metrics, not_applicable = adversarial_metrics(res)
    summary = res.summary()
    if reused is not None:
        summary["reused_from"] = reused.to_dict()
    out_dir = _own_dir(candidate) / "adversarial"
    pack = write_failure_pack(res, out_dir, name=f"{ctx.spec.name}-adversarial-{candidate.run_id}", source_pack=ctx.pack.digest)
    summary.update({"int8_runtime": where, "findings_pack": str(pack) if pack else None,
                    "findings": [{"seed": f.seed_id, "kind": f.kind, "detail": f.detail, "linf": f.linf}
                                 for f in res.findings]})
    artifact = (ArtifactKind.ADVERSARIAL_PACK, pack / "manifest.yaml") if pack is not None else None
    return CheckOutcome(metrics, summary, artifact, not_applicable)


def adversarial_metrics(res: AdversarialResult) -> tuple[dict[str, Measurement], dict[str, str]]:
    """The search's metrics, or, for a search the time cap ended, none and the reason for each:
    a smaller search than the budgeted one is not what the gate's threshold was chosen for."""
    stopped = res.stopped
    if stopped is not None:
        return {}, {m: stopped for m in ADVERSARIAL_METRICS}
    values = (res.disagreement_rate, res.coverage, res.fp32_robustness, res.int8_robustness)
    return computed_metrics(dict(zip(ADVERSARIAL_METRICS, values))), {}


def candidate_cis(ctx: RunContext, candidate: VariantResult, confidence: float = 0.95) -> dict[str, tuple[float, float]]:
    """Bootstrap CIs of the candidate's quality metrics from its per-sample records."""
    from edgegate.stats import paired_bootstrap

    records_by_scorer = read_per_sample(_own_dir(candidate))
    names = [sc.name for sc in ctx.scorers if sc.name in records_by_scorer]
    aggregate = combined_aggregate([sc for sc in ctx.scorers if sc.name in names])
    if aggregate is None or not names:
        return {}
    n = len(records_by_scorer[names[0]])
    records = [{s: records_by_scorer[s][i] for s in names} for i in range(n)]
    return paired_bootstrap(n, lambda idx: aggregate([records[i] for i in idx]), confidence=confidence)


def strict_gates(
    ctx: RunContext, gates: Sequence[Gate], candidate: VariantResult, baseline: VariantResult,
    plain: Sequence[GateResult],
) -> list[GateResult]:
    """Re-evaluate gates on quality metrics at the conservative end of the candidate's CI."""
    cis = candidate_cis(ctx, candidate)
    conservative = dict(candidate.metrics)
    for name, (lo, hi) in cis.items():
        if name in conservative:
            m = conservative[name]
            bound = lo if get_metric(name).direction is Direction.HIGHER else hi
            conservative[name] = Measurement(bound, m.source, m.unit)
    out = []
    for gate, result in zip(gates, evaluate_gates(gates, conservative, baseline.metrics)):
        if gate.metric in cis:
            side = "lower" if get_metric(gate.metric).direction is Direction.HIGHER else "upper"
            result = dataclasses.replace(result, reason=f"strict, {side} 95% CI bound: {result.reason}")
        out.append(result)
    return out
