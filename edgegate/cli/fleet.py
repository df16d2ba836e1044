"""Commands on nightly fleets: fleet run, fleet validate."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from edgegate.cli.app import (
    cli,
    db_option,
    handle_errors,
)


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
@db_option
@click.option("--summary-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append the Markdown summary here (e.g. \"$GITHUB_STEP_SUMMARY\").")
@click.option("--quiet", is_flag=True, help="No per-cell progress; print only the summary.")
@handle_errors
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
@handle_errors
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
