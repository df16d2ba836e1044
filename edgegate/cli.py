"""The ``edgegate`` command: a thin click layer over the library (parse, call, render, exit).

Exit codes: 0 all gates pass; 1 a gate failed (and nothing else); 2 bad input or usage; 3 the
target, a tool or the machine failed (disk full, damaged database); 4 an internal error (its
traceback goes to a log file). Every failure is printed as one ``error:`` line, never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import click

from edgegate import __version__
from edgegate.errors import EdgeGateError, InputError, InternalError, crash_log, os_error

EXIT_OK, EXIT_GATE_FAILED, EXIT_INPUT, EXIT_TARGET, EXIT_INTERNAL = 0, 1, 2, 3, 4


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The one place where exceptions become an error line and an exit code: 1 only ever
    means a gate failed; the machine's failures are 3; a bug is EXIT_INTERNAL, with the
    traceback in a log file, never on the terminal."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own exits (usage errors, --help) keep click's handling
        except Exception as exc:  # noqa: BLE001  the last line of defence: classified below
            err = _as_edgegate_error(exc)
            click.echo(f"error: {err.message}", err=True)
            sys.exit(err.exit_code)

    return wrapper


def _as_edgegate_error(exc: Exception) -> EdgeGateError:
    """`exc` as the EdgeGateError a user should see: ours as they are, an OSError as the
    path and its cause, a database failure as the database and its cause, anything else as
    an internal error whose traceback goes to a log file."""
    if isinstance(exc, EdgeGateError):
        return exc
    if isinstance(exc, OSError):
        return os_error(exc)
    if type(exc).__module__.startswith("sqlalchemy"):
        from edgegate.db import database_error

        return database_error(exc)  # type: ignore[arg-type]
    from edgegate.db import DEFAULT_DB_DIR

    home = Path(os.environ.get("EDGEGATE_HOME", DEFAULT_DB_DIR)).absolute()
    path = crash_log(exc, [home / "logs", Path.home() / ".edgegate" / "logs",
                           Path(tempfile.gettempdir()) / "edgegate-logs"])
    where = f"traceback in {path}" if path is not None else "no log file could be written"
    summary = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    return InternalError(f"internal error: {summary} ({where}); please report it")


class _OneLineUsageError(click.UsageError):
    """A bad option or argument, said like every other bad input: one line, exit code 2."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Cli(click.Group):
    """Click prints a usage error as three lines (usage, hint, error); here it is one."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # subcommands parse their options in here
        except click.UsageError as exc:
            raise _one_line(exc) from None


def _one_line(exc: click.UsageError) -> click.UsageError:
    # `edgegate` alone prints its help (click's NoArgsIsHelpError): that is no error line
    if isinstance(exc, (_OneLineUsageError, getattr(click.exceptions, "NoArgsIsHelpError", ()))):
        return exc
    where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
    return _OneLineUsageError(where + exc.format_message(), exc.ctx)


@click.group(cls=_Cli)
@click.version_option(__version__, prog_name="edgegate")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """EdgeGate: quantize, compile, benchmark, score and gate models for Qualcomm NPUs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


_db_option = click.option(
    "--db", "db_url", envvar="EDGEGATE_DB", default=None, metavar="URL",
    help="SQLAlchemy URL of the experiment database (default sqlite:///.edgegate/edgegate.db; env EDGEGATE_DB).",
)


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--device", default=None, help="Device name (devices/NAME.yaml) or path; overrides the pipeline's.")
@_db_option
@click.option("--rebaseline", is_flag=True, help="Run the FP32 baseline again and make it the golden.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the JSON report (default .edgegate/reports/PIPELINE-RUN.json).")
@click.option("--markdown-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as Markdown (e.g. $GITHUB_STEP_SUMMARY).")
@click.option("--quiet", is_flag=True, help="No progress output; print only the report.")
@click.option("--verify-reproducible", is_flag=True,
              help="Quantize and compile again in fresh processes and compare bytes; metric `reproducible` "
                   "(1/0; on AI Hub one compile more, only under a pinned qairt_version).")
@click.option("--strict", is_flag=True,
              help="Quality gates must hold on the conservative end of the candidate's 95% bootstrap CI.")
@click.option("--evidence", type=click.Choice(["on-pass", "always", "never"]), default="on-pass", show_default=True,
              help="When to write a signed evidence bundle (always: failing runs too, with the verdict inside).")
@click.option("--signing-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Ed25519 PEM private key (default $EDGEGATE_SIGNING_KEY, then signing_key in ./edgegate.toml).")
@click.option("--evidence-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where bundles and their artifacts go (default ./evidence).")
@_handle_errors
def run(pipeline: str, device: str | None, db_url: str | None, rebaseline: bool, json_out: Path | None,
        markdown_out: Path | None, quiet: bool, verify_reproducible: bool, strict: bool, evidence: str,
        signing_key: Path | None, evidence_dir: Path | None) -> None:
    """Run PIPELINE: FP32 baseline (first time) -> AIMET INT8 -> compile -> benchmark -> score -> gates."""
    from edgegate.progress import Progress
    from edgegate.report.run_report import render_markdown, render_terminal
    from edgegate.run.pipeline import RunOptions, run_pipeline

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the run's row gets its final status.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    result = run_pipeline(
        pipeline,
        RunOptions(device=device, db_url=db_url, rebaseline=rebaseline, report_path=json_out,
                   strict=strict, progress=Progress(quiet=quiet), evidence=evidence, signing_key=signing_key,
                   evidence_dir=evidence_dir, verify_reproducible=verify_reproducible),
    )
    report = result.report  # built once, by the run (with the evidence step's notes)
    click.echo(render_terminal(report))
    click.echo(f"JSON report: {result.report_path}")
    click.echo(f"Evidence bundle: {result.evidence_status}")
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        with open(markdown_out, "a") as f:
            f.write(render_markdown(report))
    sys.exit(EXIT_OK if result.passed else EXIT_GATE_FAILED)


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--device", default=None, help="Device name or path; overrides the pipeline's.")
@_handle_errors
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


@cli.command()
@click.argument("model")
@click.option("--pack", "pack_dir", type=click.Path(path_type=Path), required=True,
              help="The PromptPack to score on (edgegate pack create makes one).")
@click.option("--task", required=True, metavar="TASK",
              help="image-classification, object-detection, text-classification or text-embedding.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The pipeline YAML to write.")
@click.option("--device", default="htp-sim", show_default=True, help="Device name (devices/NAME.yaml) or path.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:DIMS",
              help="An input's shape, e.g. image:1x3x224x224: every input of a TorchScript file, or the "
                   "dynamic dimensions of an ONNX one (repeat for each input).")
@click.option("--tokenizer", type=click.Path(path_type=Path), default=None,
              help="Text tasks: the model's tokenizer.json (default: tokenizer.json beside MODEL).")
@click.option("--name", default=None, help="The pipeline's name (default: from MODEL's file name).")
@click.option("--force", is_flag=True, help="Replace the file at --out.")
@_handle_errors
def init(model: str, pack_dir: Path, task: str, out: Path, device: str, inputs: tuple[str, ...],
         tokenizer: Path | None, name: str | None, force: bool) -> None:
    """Write a pipeline YAML for MODEL scored on the PromptPack --pack.

    MODEL is an .onnx file, a TorchScript .pt/.pth file or a torch factory package.module:function
    (TorchScript and factories keep no input shapes: give each with --input NAME:DIMS)."""
    from edgegate.config.model_signature import parse_input_option
    from edgegate.config.scaffold import InitRequest, PackFacts, write_pipeline
    from edgegate.packs.adapters import get_preset
    from edgegate.packs.promptpack import load_promptpack
    from edgegate.packs.summary import describe_pack
    from edgegate.run.models import resolve_factory

    request = InitRequest(model=model, task=task, out=out, device=device, name=name, tokenizer=tokenizer,
                          inputs=dict(parse_input_option(text) for text in inputs), force=force)
    request.check_out()
    pack = PackFacts.from_description(describe_pack(load_promptpack(pack_dir)), pack_dir)
    written = write_pipeline(request, pack, get_preset(task).options,
                             functools.partial(resolve_factory, what="MODEL"))
    click.echo(f"wrote {written.path}: pipeline {written.spec.name}, {task} adapter, device "
               f"{written.spec.device} (AIMET config {written.aimet_config}), {len(written.spec.gates)} gate(s)")
    click.echo(f"next: edgegate validate {written.path} && edgegate run {written.path}")


@cli.group()
def golden() -> None:
    """Show, set or clear the golden (reference) run of a pipeline on a device."""


@golden.command("show")
@click.option("--pipeline", default=None, help="Only this pipeline (by name).")
@_db_option
@_handle_errors
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
@_db_option
@_handle_errors
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
@_db_option
@_handle_errors
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
@_db_option
@_handle_errors
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
@_db_option
@_handle_errors
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
@_handle_errors
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
@_db_option
@_handle_errors
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
@_db_option
@_handle_errors
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


@cli.group()
def keys() -> None:
    """Make the Ed25519 key pair that signs evidence bundles."""


@keys.command("generate")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Directory for edgegate.key (mode 0600) and edgegate.pub.")
@click.option("--passphrase-env", metavar="VAR", default=None,
              help="Encrypt the private key with the passphrase in environment variable VAR.")
@_handle_errors
def keys_generate(out_dir: Path, passphrase_env: str | None) -> None:
    """Generate an Ed25519 signing key pair as PEM files; print the key id."""
    import os

    from edgegate.report.evidence import generate_keypair

    passphrase = None
    if passphrase_env is not None:
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise InputError(f"--passphrase-env: environment variable {passphrase_env} is not set or empty")
    pair = generate_keypair(out_dir, passphrase)
    enc = f", encrypted with ${passphrase_env}" if pair.encrypted else ""
    click.echo(f"private key: {pair.private_path} (mode 0600{enc}); keep it secret")
    click.echo(f"public key:  {pair.public_path} (give it to whoever verifies)")
    click.echo(f"key id:      {pair.key_id}")


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The signer's Ed25519 public key (edgegate.pub).")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory holding the subjects by name (evidence/PIPELINE-RUN/): recompute every sha256.")
@click.option("--promptpack", type=click.Path(path_type=Path), default=None,
              help="Check the PromptPack subject against this pack (directory or manifest.yaml).")
@click.option("--require-pass", is_flag=True, help="Also fail (exit 1) when the signed verdict is FAIL.")
@_handle_errors
def verify(bundle: Path, key_path: Path, artifacts: Path | None, promptpack: Path | None, require_pass: bool) -> None:
    """Verify an evidence BUNDLE: signature, statement and (with --artifacts) every artifact.

    Exit code 0 when valid, 1 when not (with the reason), 2 when a file cannot be read.
    """
    from edgegate.report.evidence import SubjectStatus, verify_bundle

    res = verify_bundle(bundle, key_path, artifacts, promptpack)
    if not res.ok or res.statement is None:
        click.echo(f"invalid: {bundle}: {res.reason}", err=True)
        sys.exit(EXIT_GATE_FAILED)
    if require_pass and not res.passed:
        click.echo(f"invalid: {bundle}: the signed verdict is FAIL (--require-pass)", err=True)
        sys.exit(EXIT_GATE_FAILED)
    try:
        pred = res.statement["predicate"]
        run_id = pred["measurements"].get("candidate", {}).get("run_id")
        headline = (f"  {pred['pipeline'].get('name')} run {run_id} on {pred['device'].get('name')}: "
                    f"verdict {'PASS' if res.passed else 'FAIL'} ({pred['started_at']} .. {pred['finished_at']})")
    except (KeyError, TypeError, AttributeError) as exc:  # signed, but not shaped like our statements
        # as verify_bundle's own shape check says it: bad input (2), one line
        raise InputError(f"{bundle}: the signed statement is not an EdgeGate evidence statement: "
                         f"{type(exc).__name__}: {exc}") from None
    click.echo(f"valid: {bundle}: signed by key {res.key_id}")
    click.echo(headline)
    if len(res.signatures) > 1:  # DSSE: one valid signature is enough; say what each of the others is
        for line in res.signature_lines():
            click.echo(line)
    checked = sum(1 for _, st in res.subjects if st is SubjectStatus.OK)
    unchecked = [n for n, st in res.subjects if st is SubjectStatus.NOT_CHECKED]
    hint = "give --artifacts DIR" if artifacts is None else "give --promptpack PACK"
    click.echo(f"  subjects: {checked} of {len(res.subjects)} digests recomputed"
               + (f"; not checked: {', '.join(unchecked)} ({hint})" if unchecked and len(unchecked) < 3
                  else f"; {len(unchecked)} not checked ({hint})" if unchecked else ""))


@cli.group()
def fleet() -> None:
    """Nightly fleet checks: many pipelines x many devices, concurrently, with trends."""


@fleet.command("run")
@click.argument("fleet_file", metavar="FLEET", type=click.Path(dir_okay=False))
@click.option("--executor", default="local", show_default=True, metavar="local|dask://HOST:PORT",
              help="Run cells in local subprocesses, or on a Dask cluster whose workers advertise device-NAME.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Cells running at once (default: the fleet file's concurrency).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report directory: fleet.json/.md/.html, junit.xml, logs/ (default .edgegate/fleet/NAME/ID).")
@_db_option
@click.option("--summary-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append the Markdown summary here (e.g. \"$GITHUB_STEP_SUMMARY\").")
@click.option("--quiet", is_flag=True, help="No per-cell progress; print only the summary.")
@_handle_errors
def fleet_run(fleet_file: str, executor: str, concurrency: int | None, out_dir: Path | None, db_url: str | None,
              summary_out: Path | None, quiet: bool) -> None:
    """Run every cell of FLEET; exit 1 on a confirmed regression or newly failing gates, 3 on errors only."""
    from edgegate.fleet.model import FleetOptions
    from edgegate.fleet.report import render_fleet_markdown
    from edgegate.fleet.run import run_fleet
    from edgegate.progress import Progress

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run_fleet(fleet_file, FleetOptions(executor=executor, concurrency=concurrency, out_dir=out_dir,
                                                db_url=db_url, progress=Progress(quiet=quiet)))
    click.echo(result.reports["text"].read_text(), nl=False)
    click.echo(f"Reports: {result.out_dir} (fleet.html, fleet.md, junit.xml, fleet.json)")
    if summary_out is not None:
        summary_out.parent.mkdir(parents=True, exist_ok=True)
        with open(summary_out, "a") as f:
            f.write(render_fleet_markdown(json.loads(result.reports["json"].read_text())))
    sys.exit(result.exit_code)


@fleet.command("validate")
@click.argument("fleet_file", metavar="FLEET", type=click.Path(dir_okay=False))
@_handle_errors
def fleet_validate(fleet_file: str) -> None:
    """Check FLEET and print its matrix of cells without running anything."""
    from edgegate.fleet.matrix import expand_matrix
    from edgegate.fleet.spec import load_fleet

    spec = load_fleet(fleet_file)
    cells, notes = expand_matrix(spec)
    click.echo(f"ok: fleet {spec.name}: {len(cells)} cell(s), up to {spec.concurrency} at once, "
               f"timeout {spec.timeout_s:g} s, {spec.confirm_reruns} confirmation rerun(s)")
    for c in cells:
        click.echo(f"  {c.id}" + (f": cannot run: {c.error}" if c.error else ""))
    for n in notes:
        click.echo(f"note: {n}")


@cli.group()
def pack() -> None:
    """Build, check and describe PromptPacks (the hashed evaluation data a run scores)."""


_PACK_TASKS = ["image-classification", "object-detection", "text-classification"]


@pack.command("create")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the pack to (built aside and renamed into place when complete).")
@click.option("--task", type=click.Choice(_PACK_TASKS), default=None,
              help="Default from SOURCE: a folder -> image-classification (a subfolder per class, or unlabelled), "
                   "a .json -> object-detection (COCO), a .csv/.tsv/.jsonl -> text-classification.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="COCO: the folder of the images its file_name fields name (default: the JSON file's folder).")
@click.option("--text-column", default=None, help="CSV/JSONL: the column holding the text (default: text).")
@click.option("--label-column", default=None,
              help="CSV/JSONL: the column holding the label (default: label; a row without one is unlabelled).")
@click.option("--id-column", default=None, help="CSV/JSONL: a column of unique sample ids (default: row-00001, ...).")
@click.option("--classes", "classes_csv", default=None, metavar="A,B,...",
              help="Class names in the model's output order (default: the labels sorted; COCO: its categories).")
@click.option("--classes-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class names in the model's output order, one per line (e.g. the 1000 ImageNet classes).")
@click.option("--calibration", type=int, default=16, show_default=True,
              help="Samples in the calibration split (what INT8 quantization calibrates on).")
@click.option("--eval", "eval_count", type=int, default=None,
              help="Samples in the eval split (default: every sample not in another split).")
@click.option("--support", type=int, default=0, show_default=True,
              help="Labelled samples in a support split (class centroids for embedding models; 0: none).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the splits (stratified by label; the same data and seed give the same splits).")
@click.option("--name", default=None, help="The pack's name (default: the --out folder's name).")
@click.option("--version", "pack_version", default="1.0.0", show_default=True,
              help="The pack's version, MAJOR.MINOR.PATCH.")
@click.option("--description", default=None, help="One paragraph on the pack (default: written from the data).")
@click.option("--license", "license_", default="unspecified", show_default=True,
              help="The data's licence, recorded in the manifest's sources (e.g. CC-BY-4.0).")
@click.option("--source", "source_name", default=None,
              help="Where the data came from (a dataset name or URL), recorded in sources (default: SOURCE's name).")
@click.option("--attribution", default="", help="The attribution the licence asks for, recorded in sources.")
@click.option("--language", default="und", show_default=True,
              help="Texts: their BCP 47 language tag (und: not determined).")
@click.option("--link", is_flag=True,
              help="Hard-link the images instead of copying them (same filesystem; the manifest still pins their bytes).")
@click.option("--force", is_flag=True, help="Replace the pack already at --out.")
@_handle_errors
def pack_create(source: Path, out_dir: Path, task: str | None, images: Path | None, text_column: str | None,
                label_column: str | None, id_column: str | None, classes_csv: str | None,
                classes_file: Path | None, calibration: int, eval_count: int | None, support: int, seed: int,
                name: str | None, pack_version: str, description: str | None, license_: str,
                source_name: str | None, attribution: str, language: str, link: bool, force: bool) -> None:
    """Build a PromptPack from SOURCE: an image folder, a COCO detection JSON, or a CSV/JSONL of texts.

    Copies the samples, writes manifest.yaml with every sha256 and seeded calibration/eval
    splits. Unreadable or duplicate samples are refused, one error line each, and nothing is written.
    """
    from edgegate.packs.create import (
        PackCreateOptions,
        PackSourceError,
        create_pack,
        read_class_names,
    )
    from edgegate.packs.manifest import Task

    if classes_csv is not None and classes_file is not None:
        raise InputError("--classes and --classes-file: give one of them")
    classes = classes_csv.split(",") if classes_csv is not None else None
    if classes_file is not None:
        classes = read_class_names(classes_file)
    opts = PackCreateOptions(
        source=source, out=out_dir, task=Task(task) if task else None, images=images, text_column=text_column,
        label_column=label_column, id_column=id_column, classes=classes, calibration=calibration,
        eval=eval_count, support=support, seed=seed, name=name, version=pack_version, description=description,
        license=license_, source_name=source_name, attribution=attribution, language=language, link=link,
        force=force,
    )
    try:
        made = create_pack(opts)
    except PackSourceError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_INPUT)
    splits = ", ".join(f"{k} {v}" for k, v in made.splits.items())
    what = "boxes" if made.task is Task.OBJECT_DETECTION else "labelled samples"
    click.echo(f"ok: wrote PromptPack {made.name} {made.version} ({made.task.value}) to {made.path}")
    click.echo(f"  splits: {splits}; {len(made.classes)} classes; {made.labelled} {what}")
    click.echo(f"  digest: {made.digest}")
    for note in made.notes:
        click.echo(f"note: {note}")


@pack.command("verify")
@click.argument("pack_dir", metavar="DIR", type=click.Path(path_type=Path))
@_handle_errors
def pack_verify(pack_dir: Path) -> None:
    """Check the pack in DIR: every file's sha256, the manifest and samples schema, every image decodes.

    Exit code 0 when it verifies, 2 with one error line per problem when not.
    """
    from edgegate.packs.summary import verify_pack

    check = verify_pack(pack_dir)
    if check.problems:
        for problem in check.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_INPUT)
    p = check.pack
    click.echo(f"ok: {p.name} {p.version} ({p.digest[:19]}): {check.files} files hashed, "
               f"{check.images} images decoded, splits {', '.join(f'{s} {len(p.samples(s))}' for s in p.splits)}")


@pack.command("show")
@click.argument("pack_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@_handle_errors
def pack_show(pack_dir: Path, fmt: str) -> None:
    """Describe the pack in DIR: name, version, task, classes, splits, label counts, sources, digest."""
    from edgegate.packs.promptpack import load_promptpack
    from edgegate.packs.summary import describe_pack, render_pack

    desc = describe_pack(load_promptpack(pack_dir, verify=False))
    click.echo(json.dumps(desc, indent=1, ensure_ascii=False) if fmt == "json" else render_pack(desc))


def main() -> None:
    cli(prog_name="edgegate")


if __name__ == "__main__":
    main()
