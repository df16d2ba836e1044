"""The orchestrator: one pipeline on one device, from FP32 baseline to gated INT8 candidate.

``run_pipeline`` does, in order:

1. Load and check the pipeline, the device, the PromptPack (hashes verified), the adapter
   (host glue), the scorers and the target (``run.context``); resolve the signing key;
   decode every sample the run will read (``run.inputs``), so bad data fails here.
2. Export every graph of the model to FP32 ONNX (content-addressed).
3. Golden: when the pipeline has no golden on this device (or ``rebaseline``), run the
   FP32 baseline (compile, benchmark, infer + score) and store its metrics as golden. Two
   first runs racing: one baseline becomes the golden, the other run compares against it.
4. Quantize the candidate with AIMET, calibrated on the pack's calibration split through
   the FP32 cascade (cached by input digests).
5. Compile the INT8 graphs for the target (cached).
6. Benchmark: warmup + timed repeats of every graph, in each of `processes` fresh worker processes.
7. Infer + score the eval split through the compiled graphs (steps 5-7: ``run.variant``,
   which records the toolchain that ran them), then the optional checks (``run.checks``):
   reproducibility, adversarial search. A golden measured with another toolchain is a note.
8. Compare with golden, evaluate the gates (``--strict``: on the conservative CI bound),
   build the report once and write it as JSON.
9. Evidence: sign an in-toto statement of the run (DSSE, Ed25519) when ``evidence`` says so;
   a missing key or a failure here is a note, never an error after the measurements.

Every variant is a row in the database from its start; the row always ends with a final
status, whatever happens in between. The result is built once, when everything it holds
is known; after the candidate's row is final only the evidence step's outcome is added,
as a new value.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from edgegate.artifacts import ArtifactCache, digest_json, sha256_file
from edgegate.db import ExperimentDB
from edgegate.errors import EdgeGateError, InputError
from edgegate.gates import evaluate_gates, verdict
from edgegate.packs.adapters import Prediction
from edgegate.progress import Progress
from edgegate.report.evidence import (
    EvidenceMode,
    prepare_signing,
    utc_timestamp,
    write_evidence,
)
from edgegate.report.run_report import build_report, write_json_report
from edgegate.results import ArtifactKind, PipelineResult, VariantResult, first_artifact
from edgegate.run.checks import (
    CheckOutcome,
    gates_not_applicable,
    search_adversarial,
    strict_gates,
)
from edgegate.run.context import load_context
from edgegate.run.inputs import check_run_samples
from edgegate.run.models import weight_bytes
from edgegate.run.outputs import ArtifactFile, load_predictions
from edgegate.run.parallel import RUN_TORCH_THREADS, torch_threads
from edgegate.run.repro_check import ReproducibilityCheck
from edgegate.run.runners import benchmark_feeds, collect_graph_inputs, cpu_runner
from edgegate.run.stages import evaluate, export_graphs, quantize_graphs
from edgegate.run.variant import (
    RunScope,
    VariantPlan,
    golden_variant,
    record_artifact,
    run_variant,
    store_metrics,
)
from edgegate.targets.base import Variant
from edgegate.targets.ort_runtime import native_log
from edgegate.toolchain import drift_text, toolchain_drift


@dataclass
class RunOptions:
    device: str | None = None
    db_url: str | None = None
    rebaseline: bool = False
    home: Path | None = None
    report_path: Path | None = None
    # Gates on quality metrics hold on the conservative end of the candidate's 95% bootstrap CI.
    strict: bool = False
    progress: Progress = field(default_factory=lambda: Progress(quiet=True))
    evidence: EvidenceMode | str = EvidenceMode.ON_PASS  # on-pass | always | never
    signing_key: Path | None = None  # else $EDGEGATE_SIGNING_KEY, else ./edgegate.toml
    evidence_dir: Path | None = None  # default ./evidence
    # also: quantization.verify_reproducible in the pipeline file
    verify_reproducible: bool = False
    # fresh processes that quantize + compile again for the reproducibility check (the run
    # itself is the first of the double run)
    repro_repeats: int = 1
    # False (--no-cache): nothing is read from the artifact cache, every stage computes again
    use_cache: bool = True
    # prediction worker processes (--jobs); None: from the host's cores (run.parallel)
    jobs: int | None = None


def artifact_cache_dir(home: Path) -> Path:
    """$EDGEGATE_CACHE (e.g. a directory CI keeps between jobs), else HOME/artifacts. The
    cache is content-addressed and safe to share between runs and processes."""
    env = os.environ.get("EDGEGATE_CACHE")
    if not env:
        return home / "artifacts"
    path = Path(env).absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"EDGEGATE_CACHE={env}: cannot use it as the artifact cache ({exc.strerror or exc})") from None
    return path


def _golden(
    scope: RunScope, golden_id: int, notes: list[str]
) -> tuple[VariantResult, list[Prediction] | None]:
    """Step 3, when a golden exists: its stored measurements and predictions (None when
    its predictions file is gone, damaged (sha256 differs from the recorded one) or was
    made on other samples)."""
    ctx, db = scope.ctx, scope.db
    golden_run = db.get_run(golden_id)
    if golden_run is not None and golden_run.pack_digest != ctx.pack.digest:
        raise InputError(
            f"golden run {golden_id} of {ctx.spec.name} on {ctx.device.name} was scored on PromptPack "
            f"{golden_run.pack_digest}, this run uses {ctx.pack.digest}: comparing them would "
            "mislead; rerun with --rebaseline to make a new golden"
        )
    baseline = golden_variant(db, golden_id)
    pred_art = first_artifact(baseline.artifacts, ArtifactKind.PREDICTIONS)
    preds = (load_predictions(Path(pred_art["path"]), scope.eval_samples, pred_art["sha256"])
             if pred_art is not None else None)
    if golden_run is not None and golden_run.model_digest != scope.model_digest:
        notes.append(
            f"the FP32 model differs from golden run {golden_id}'s ({golden_run.model_digest[:19]}); "
            "use --rebaseline if the baseline itself changed on purpose"
        )
    return baseline, preds


def _store_check(db: ExperimentDB, run_id: int, check: CheckOutcome | None) -> None:
    if check is None:
        return
    store_metrics(db, run_id, check.metrics)
    if check.artifact is not None:
        kind, path = check.artifact
        record_artifact(db, run_id, kind, None, path)


def run_pipeline(pipeline_path: str | Path, options: RunOptions | None = None) -> PipelineResult:
    """Run a pipeline end to end (steps in the module docstring) and return the result."""
    with ExitStack() as cleanup:
        return _run(pipeline_path, options or RunOptions(), cleanup)


def _run(pipeline_path: str | Path, opts: RunOptions, cleanup: ExitStack) -> PipelineResult:
    progress = opts.progress
    started_at = utc_timestamp()
    # 1. load and check everything (the signing key too: say now, not after the run, if none)
    signing = prepare_signing(opts.evidence, opts.signing_key)
    ctx = load_context(pipeline_path, device=opts.device, home=opts.home)
    check_run_samples(ctx.spec, ctx.pack)
    if signing.problem:  # after the inputs check out, so a bad input stays a single error line
        progress.info(signing.problem)
    db = ExperimentDB(opts.db_url)
    cache = ArtifactCache(artifact_cache_dir(ctx.home), refresh=not opts.use_cache)
    spec = ctx.spec
    invocation = uuid.uuid4().hex
    # QNN's native chatter (# LIBNATIVE: ...) goes to the run's log, not the terminal
    cleanup.enter_context(native_log(ctx.home / "logs" / f"{spec.name}-{invocation[:12]}-native.log"))
    cleanup.enter_context(torch_threads(RUN_TORCH_THREADS))  # host glue on small tensors (run.parallel)
    progress.info(
        f"pipeline {spec.name} on {ctx.device.name} ({ctx.device.kind}); PromptPack "
        f"{ctx.pack.name} {ctx.pack.version} {ctx.pack.digest[:19]}"
    )

    # 2. FP32 ONNX of every graph
    with progress.stage("export FP32 graphs"):
        fp32 = export_graphs(ctx, cache)
    eval_samples = ctx.pack.samples(spec.evaluation.split, spec.evaluation.limit)
    calib_samples = ctx.pack.samples(spec.quantization.calibration.split, spec.quantization.calibration.samples)
    fp32_run = cpu_runner(fp32)
    scope = RunScope(
        ctx, db, cache, progress, invocation=invocation,
        model_digest="sha256:" + digest_json({g: sha256_file(p) for g, p in fp32.items()}),
        eval_samples=eval_samples,
        # Benchmark inputs: what each graph is fed on the first eval image that reaches it.
        bench_feeds=benchmark_feeds(ctx.adapter, ctx.graphs, fp32_run, eval_samples),
        jobs=opts.jobs,
    )
    fp32_inputs: list[ArtifactFile] = [(ArtifactKind.FP32_ONNX, g, p) for g, p in fp32.items()]

    # 3. golden: the FP32 baseline, run once per pipeline x device (or on --rebaseline)
    golden_id = db.golden(spec.name, ctx.device.name)
    notes: list[str] = []
    baseline_preds: list[Prediction] | None
    if golden_id is not None and not opts.rebaseline:
        baseline, baseline_preds = _golden(scope, golden_id, notes)
    else:
        measured = run_variant(scope, VariantPlan(
            Variant.FP32, ctx.baseline_target, fp32, size_bytes=sum(weight_bytes(p, None) for p in fp32.values()),
            inputs=fp32_inputs,
        ))
        baseline, baseline_preds = measured.result, measured.predictions
        if opts.rebaseline:
            db.set_golden(spec.name, ctx.device.name, baseline.run_id)
            golden_id = baseline.run_id
        else:  # another first run may have stored its baseline meanwhile: the first one wins
            golden_id = db.claim_golden(spec.name, ctx.device.name, baseline.run_id)
        if golden_id == baseline.run_id:
            progress.info(f"stored run {golden_id} as golden for {spec.name} on {ctx.device.name}")
        else:
            notes.append(f"run {golden_id} became the golden while this run measured its baseline "
                         f"(run {baseline.run_id}); the candidate is compared with the golden")
            baseline, baseline_preds = _golden(scope, golden_id, notes)
    if baseline_preds is None:
        # The golden's predictions are gone from disk: recompute the FP32 reference here.
        with progress.stage("recompute FP32 reference predictions"):
            baseline_preds = evaluate(ctx.adapter, fp32_run, eval_samples, [], None, progress, "fp32 reference").predictions
        notes.append("FP32 reference predictions were recomputed on the host CPU (golden's file missing or damaged)")

    # 4. quantize with AIMET, calibrated through the FP32 cascade
    with progress.stage(f"collect calibration inputs ({len(calib_samples)} samples)"):
        calibration = collect_graph_inputs(ctx.adapter, fp32_run, calib_samples, progress, "calibration")
    # 7b. optionally: the reproducibility check's fresh process, beside this run's quantize + compile
    repro_check = None
    if opts.verify_reproducible or spec.quantization.verify_reproducible:
        repro_check = ReproducibilityCheck(ctx, pipeline_path, opts.device, calibration, fp32, cache, progress,
                                           repeats=opts.repro_repeats)
        repro_check.start(ctx.home / "tmp" / f"reproduce-{scope.invocation}")
        cleanup.callback(repro_check.stop)  # a failed or interrupted run leaves no worker behind
    quantized = quantize_graphs(ctx, fp32, calibration, cache, progress)
    qdq = {g: q.qdq_onnx for g, q in quantized.items()}
    int8_inputs: list[ArtifactFile] = []
    for g, q in quantized.items():
        int8_inputs += [(ArtifactKind.FP32_ONNX, g, fp32[g]), (ArtifactKind.QDQ_ONNX, g, q.qdq_onnx),
                        (ArtifactKind.ENCODINGS, g, q.encodings), (ArtifactKind.ENCODINGS_ONNX, g, q.encodings_onnx)]

    # 5-7. compile, benchmark, infer + score the INT8 candidate
    measured_candidate = run_variant(scope, VariantPlan(
        Variant.INT8, ctx.target, qdq,
        size_bytes=sum(weight_bytes(p, spec.quantization.param_bw) for p in fp32.values()),
        inputs=int8_inputs, reference=baseline_preds, golden_run_id=golden_id,
        before_benchmark=repro_check.join if repro_check is not None else None,
    ))
    candidate = measured_candidate.result
    # The FP32 golden is often kept for months: a new QAIRT / QNN SDK / device since then is
    # worth knowing, not an error.
    drift = toolchain_drift(baseline.toolchain, candidate.toolchain)
    if drift:
        notes.append(
            f"golden run {golden_id} was measured with another toolchain than this candidate ({drift_text(drift)}): "
            "part of any difference may be the toolchain's; --rebaseline measures the golden again"
        )

    # 7b. the reproducibility check: this run's artifacts against the fresh process's
    repro = None
    if repro_check is not None:
        repro = repro_check.finish(quantized, candidate, scope.computed_by(candidate.run_id, candidate.run_key))
        _store_check(db, candidate.run_id, repro)

    # 7c. optionally (the pipeline's adversarial section): search for inputs FP32 and INT8 disagree on
    adversarial = search_adversarial(ctx, fp32, qdq, candidate, eval_samples, progress, cache,
                                     scope.computed_by(candidate.run_id, candidate.run_key))
    _store_check(db, candidate.run_id, adversarial)

    # The candidate as measured, with what the checks computed: its final value.
    extra = {**(repro.metrics if repro else {}), **(adversarial.metrics if adversarial else {})}
    candidate = dataclasses.replace(candidate, metrics={**candidate.metrics, **extra})

    # 8. compare with golden, gates, report
    gate_results = evaluate_gates(spec.parsed_gates(), candidate.metrics, baseline.metrics)
    if opts.strict:
        gate_results = strict_gates(ctx, spec.parsed_gates(), candidate, baseline, gate_results)
    # A check that could not measure its metrics (an adversarial search stopped by its time cap)
    # makes the gates on them n/a with its reason: never a pass or fail from a smaller search.
    gate_results = gates_not_applicable(gate_results, [repro, adversarial])
    passed = verdict(gate_results)
    report_path = opts.report_path or (ctx.home / "reports" / f"{spec.name}-{candidate.run_id}.json")
    result = PipelineResult(
        pipeline=spec.name,
        device={**ctx.target.describe(), "config": ctx.device.model_dump(mode="json")},
        pack={"name": ctx.pack.name, "version": ctx.pack.version, "digest": ctx.pack.digest,
              "split": spec.evaluation.split, "samples": len(eval_samples),
              "calibration_samples": len(calib_samples)},
        config_digest=ctx.config_digest,
        baseline=baseline,
        candidate=candidate,
        golden_run_id=golden_id,
        gates=gate_results,
        passed=passed,
        report_path=report_path,
        notes=tuple(notes),
        config={"pipeline": spec.model_dump(mode="json"), "device": ctx.device.model_dump(mode="json")},
        started_at=started_at,
        finished_at=utc_timestamp(),
        reproducibility=repro.summary if repro else None,
        adversarial=adversarial.summary if adversarial else None,
    )
    report = build_report(result)
    write_json_report(report, report_path)
    db.finish_run(candidate.run_id, "passed" if passed else "failed", report_path=str(report_path))

    # 9. evidence bundle (the report file above is one of its subjects)
    evidence = write_evidence(result, report, signing, opts.evidence_dir)
    late_notes = [evidence.note] if evidence.note else []
    if evidence.path is not None:
        try:
            db.add_evidence(candidate.run_id, evidence.path, evidence.sha256 or "", evidence.key_id or "")
        except EdgeGateError as exc:
            late_notes.append(f"evidence bundle {evidence.path} not recorded in the database: {exc.message}")
        progress.info(f"evidence bundle: {evidence.path}")
    all_notes = [*notes, *late_notes]
    return dataclasses.replace(
        result, notes=tuple(all_notes), evidence_path=evidence.path, evidence_status=evidence.message,
        report={**report, "notes": all_notes},
    )
