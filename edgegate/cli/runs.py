"""Commands on runs: run, validate, golden, runs, devices, jobs, compare."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgegate.cli.app import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    cli,
    db_option,
    handle_errors,
)
from edgegate.errors import InputError
from edgegate.progress import wall_time_text


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--device", default=None, help="Device name (devices/NAME.yaml) or path; overrides the pipeline's.")
@db_option
@click.option("--rebaseline", is_flag=True, help="Run the FP32 baseline again and make it the golden.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the JSON report (default .edgegate/reports/PIPELINE-RUN.json).")
@click.option("--markdown-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as Markdown (e.g. $GITHUB_STEP_SUMMARY).")
@click.option("--quiet", is_flag=True, help="No progress output; print only the report.")
@click.option("--verify-reproducible", is_flag=True,
              help="Quantize and compile again in fresh processes and compare bytes; metric `reproducible` "
                   "(1/0; on AI Hub one compile more, only under a pinned qairt_version).")
@click.option("--repeats", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Fresh processes of the reproducibility check (the run itself is the first quantize + compile).")
@click.option("--jobs", type=click.IntRange(1, 256), default=None,
              help="Worker processes that run the eval samples through the compiled graphs (default: the host's "
                   "cores over what one session uses; 1 on a 2-core host). Results are identical for any N.")
@click.option("--no-cache", is_flag=True,
              help="Compute everything again: nothing is read from the artifact cache (quantized and compiled "
                   "graphs, predictions, reproducibility and adversarial results).")
@click.option("--strict", is_flag=True,
              help="Quality gates must hold on the conservative end of the candidate's 95% bootstrap CI.")
@click.option("--evidence", type=click.Choice(["on-pass", "always", "never"]), default="on-pass", show_default=True,
              help="When to write a signed evidence bundle (always: failing runs too, with the verdict inside).")
@click.option("--signing-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Ed25519 PEM private key (default $EDGEGATE_SIGNING_KEY, then signing_key in ./edgegate.toml).")
@click.option("--evidence-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where bundles and their artifacts go (default ./evidence).")
@handle_errors
def run(pipeline: str, device: str | None, db_url: str | None, rebaseline: bool, json_out: Path | None,
        markdown_out: Path | None, quiet: bool, verify_reproducible: bool, repeats: int, jobs: int | None, no_cache: bool,
        strict: bool, evidence: str, signing_key: Path | None, evidence_dir: Path | None) -> None:
    """Run PIPELINE: FP32 baseline (first time) -> AIMET INT8 -> compile -> benchmark -> score -> gates."""
    from edgegate.progress import Progress
    from edgegate.report.run_report import render_markdown, render_terminal
    from edgegate.run.pipeline import RunOptions, run_pipeline

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the run's row gets its final status.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    t0 = time.perf_counter()
    result = run_pipeline(
        pipeline,
        RunOptions(device=device, db_url=db_url, rebaseline=rebaseline, report_path=json_out,
                   strict=strict, progress=Progress(quiet=quiet), evidence=evidence, signing_key=signing_key,
                   evidence_dir=evidence_dir, verify_reproducible=verify_reproducible, repro_repeats=repeats,
                   use_cache=not no_cache, jobs=jobs),
    )
    report = result.report  # built once, by the run (with the evidence step's notes)
    click.echo(render_terminal(report))
    click.echo(f"JSON report: {result.report_path}")
    click.echo(f"Evidence bundle: {result.evidence_status}")
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        with open(markdown_out, "a") as f:
            f.write(render_markdown(report))
    click.echo(f"Wall time: {wall_time_text(time.perf_counter() - t0)}")
    sys.exit(EXIT_OK if result.passed else EXIT_GATE_FAILED)


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--device", default=None, help="Device name or path; overrides the pipeline's.")
@handle_errors
def validate(pipeline: str, device: str | None) -> None:
    """Check PIPELINE, its device, PromptPack (hashes, every sample decoded), adapter, graphs and gates without running."""
    from edgegate.run.context import load_context
    from edgegate.run.inputs import check_run_samples

    ctx = load_context(pipeline, device=device)
    check_run_samples(ctx.spec, ctx.pack)
    click.echo(
        f"ok: {ctx.spec.name}: {len(ctx.graphs)} graph(s) ({', '.join(g.name for g in ctx.graphs)}), "
        f"device {ctx.device.name} ({ctx.device.kind}, AIMET config {ctx.aimet_config}), "
        f"PromptPack {ctx.pack.name} {ctx.pack.version} ({ctx.pack.digest[:19]}), "
        f"{len(ctx.spec.gates)} gate(s)"
    )



@cli.group()
def golden() -> None:
    """Show, set or clear the golden (reference) run of a pipeline on a device."""


@golden.command("show")
@click.option("--pipeline", default=None, help="Only this pipeline (by name).")
@db_option
@handle_errors
def golden_show(pipeline: str | None, db_url: str | None) -> None:
    """List golden runs and their metrics."""
    from edgegate.db import ExperimentDB

    db = ExperimentDB(db_url)
    rows = db.goldens(pipeline)
    if not rows:
        click.echo("no golden runs" + (f" for {pipeline}" if pipeline else ""))
        return
    for pipe, dev, run_id, set_at in rows:
        click.echo(f"{pipe} on {dev}: run {run_id} (set {set_at:%Y-%m-%d %H:%M:%S} UTC)")
        for m in db.metrics(run_id).values():
            unit = f" {m.unit}" if m.unit else ""
            click.echo(f"  {m.name} = {m.value:.6g}{unit} [{m.source}]")


@golden.command("set")
@click.argument("run_id", type=int)
@db_option
@handle_errors
def golden_set(run_id: int, db_url: str | None) -> None:
    """Make RUN_ID the golden for its pipeline and device."""
    from edgegate.db import ExperimentDB

    db = ExperimentDB(db_url)
    run = db.get_run(run_id)
    if run is None:
        raise InputError(f"golden set: no run with id {run_id} in {db.url}")
    if run.status not in ("completed", "passed", "failed"):
        raise InputError(f"golden set: run {run_id} ended '{run.status}'; only a run that finished can be golden")
    db.set_golden(run.pipeline, run.device, run_id)
    click.echo(f"golden for {run.pipeline} on {run.device} is now run {run_id} ({run.variant})")


@golden.command("clear")
@click.argument("pipeline")
@click.option("--device", default=None, help="Only on this device.")
@db_option
@handle_errors
def golden_clear(pipeline: str, device: str | None, db_url: str | None) -> None:
    """Forget PIPELINE's golden (on every device, or on --device); the next run rebaselines."""
    from edgegate.db import ExperimentDB

    n = ExperimentDB(db_url).clear_golden(pipeline, device)
    click.echo(f"cleared {n} golden run(s) for {pipeline}" + (f" on {device}" if device else ""))


@cli.group()
def runs() -> None:
    """List and inspect stored runs."""


@runs.command("list")
@click.option("--pipeline", default=None, help="Only this pipeline.")
@click.option("--device", default=None, help="Only this device.")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="Output format.")
@db_option
@handle_errors
def runs_list(pipeline: str | None, device: str | None, limit: int, fmt: str, db_url: str | None) -> None:
    """List stored runs, newest first."""
    from edgegate.db import ExperimentDB
    from edgegate.report.runs import runs_frame

    frame = runs_frame(ExperimentDB(db_url), pipeline=pipeline, device=device, limit=limit)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", indent=1))
    elif frame.empty:
        click.echo("no runs")
    else:
        click.echo(frame.to_string(index=False))


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@db_option
@handle_errors
def runs_show(run_id: int, fmt: str, db_url: str | None) -> None:
    """Show one run: status, digests, metrics with sources, latency summaries, artifacts."""
    from edgegate.db import ExperimentDB
    from edgegate.report.runs import render_run, run_details

    details = run_details(ExperimentDB(db_url), run_id)
    click.echo(json.dumps(details, indent=1, default=str) if fmt == "json" else render_run(details))


@cli.command()
@click.option("--devices-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where device files are (default $EDGEGATE_DEVICES_DIR, else the nearest devices/).")
@click.option("--aihub/--no-aihub", "aihub", default=None,
              help="Also list the devices Qualcomm AI Hub offers now (default: when AI Hub credentials are set).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
@handle_errors
def devices(devices_dir: Path | None, aihub: bool | None, fmt: str) -> None:
    """List the device files and, with AI Hub credentials, AI Hub's live device list: which
    local file maps to each AI Hub device, and which local AI Hub files it no longer lists."""
    import dataclasses

    from edgegate.targets.aihub_catalogue import aihub_catalogue, local_device_files
    from edgegate.targets.aihub_session import credentials_source

    local = local_device_files(devices_dir)
    if aihub is None:
        aihub = credentials_source() is not None
    catalogue = aihub_catalogue(local) if aihub else None
    if fmt == "json":
        out: dict[str, Any] = {"local": [dataclasses.asdict(f) for f in local]}
        if catalogue is not None:
            out["aihub"] = dataclasses.asdict(catalogue)
        click.echo(json.dumps(out, indent=1, default=str))
        return
    click.echo(f"{'device file':<16} {'kind':<13} {'chipset':<10} {'arch':<5} AI Hub device / problem")
    for f in local:
        what = f.problem or f.aihub_device or (", ".join(f.aihub_attributes) if f.aihub_attributes else "")
        click.echo(f"{f.name:<16} {f.kind or 'invalid':<13} {f.chipset or '-':<10} {f.arch or '-':<5} {what}")
    if catalogue is None:
        click.echo("AI Hub: not queried (no credentials; set EDGEGATE_AIHUB_TOKEN or pass --aihub)")
        return
    click.echo(f"\nQualcomm AI Hub lists {len(catalogue.devices)} devices now (qai-hub {catalogue.client_version}):")
    for d in catalogue.devices:
        mapped = f"  <- {', '.join(d.local)}" if d.local else ""
        click.echo(f"  {d.name:<36} {d.chipset or '-':<34} {d.hexagon or '-':<5}{mapped}")
    for name in catalogue.unmatched:
        click.echo(f"warning: {name}: AI Hub lists no device it resolves to; a run on it fails at once")


@cli.command()
@click.option("--run", "run_id", type=int, default=None, help="Only the jobs of this run id.")
@click.option("--limit", default=50, show_default=True, help="How many jobs, newest first.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
@db_option
@handle_errors
def jobs(run_id: int | None, limit: int, fmt: str, db_url: str | None) -> None:
    """List Qualcomm AI Hub jobs and uploads the runs submitted or reused, newest first."""
    from edgegate.db import ExperimentDB

    rows = ExperimentDB(db_url).aihub_jobs(run_id, limit=limit)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, default=str))
        return
    if not rows:
        click.echo("no AI Hub jobs" + (f" for run {run_id}" if run_id is not None else ""))
        return
    for r in rows:
        took = f" {(r['finished_at'] - r['created_at']).total_seconds():.0f}s" if r["finished_at"] else ""
        reused = " (reused)" if r["reused"] else ""
        click.echo(f"run {r['run_id']}  {r['kind']:<9} {r['graph'] or '-':<10} {r['job_id']:<12} {r['status']:<22}"
                   f"{took}{reused}  {r['device'] or ''}  {r['created_at']:%Y-%m-%d %H:%M:%S}  {r['url'] or ''}")
        if r["failure_reason"]:
            click.echo(f"    failure: {r['failure_reason']}")


@cli.command()
@click.option("--baseline-run", type=int, required=True, help="Run id of the baseline.")
@click.option("--candidate-run", type=int, required=True, help="Run id of the candidate.")
@click.option("--threshold", default=None, metavar="T",
              help="0.01, '2%', or per metric/kind: 'accuracy=0.02,latency=5%,default=0.01'.")
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json"]), default="text", show_default=True,
              help="Output format.")
@click.option("--name", default=None, help="A name stored with the comparison.")
@click.option("--allow-pack-drift", is_flag=True, help="Compare runs scored on different PromptPack digests.")
@click.option("--allow-toolchain-drift", is_flag=True,
              help="Compare runs whose QAIRT / QNN SDK / onnxruntime-qnn version or actual device differ "
                   "(the result says what differed).")
@click.option("--rebench", is_flag=True,
              help="Time both runs' compiled graphs again, interleaved on their target, and compare latency on "
                   "those paired measurements (stored samples from different times include machine drift).")
@click.option("--processes", type=click.IntRange(1, 1000), default=None,
              help="With --rebench: benchmark processes per side (default: the baseline run's own).")
@db_option
@handle_errors
def compare(baseline_run: int, candidate_run: int, threshold: str | None, fmt: str, name: str | None,
            allow_pack_drift: bool, allow_toolchain_drift: bool, rebench: bool, processes: int | None,
            db_url: str | None) -> None:
    """Compare two stored runs (deltas, CIs, significance); store the comparison.

    Exit code 1 when a metric regressed, 0 otherwise.
    """
    from edgegate.compare import parse_threshold_option
    from edgegate.db import ExperimentDB
    from edgegate.regression import Rebench, compare_runs
    from edgegate.report.run_report import render_comparison

    if processes is not None and not rebench:
        raise InputError("--processes: only used with --rebench")
    again = Rebench(processes=processes) if rebench else None
    result = compare_runs(
        ExperimentDB(db_url), baseline_run, candidate_run, threshold=parse_threshold_option(threshold),
        allow_pack_drift=allow_pack_drift, allow_toolchain_drift=allow_toolchain_drift, name=name, rebench=again,
    )
    click.echo(render_comparison(result, fmt))
    sys.exit(EXIT_GATE_FAILED if result["verdict"] == "regressed" else EXIT_OK)
