"""The ``edgegate`` command group, its one error handler and exit codes (commands live beside it).

Exit codes: 0 all gates pass; 1 a gate failed (and nothing else); 2 bad input or usage; 3 the
target, a tool or the machine failed (disk full, damaged database); 4 an internal error (its
traceback goes to a log file). Every failure is printed as one ``error:`` line, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import click

from edgegate import __version__
from edgegate.errors import (
    EdgeGateError,
    InternalError,
    crash_log,
    os_error,
)

EXIT_OK, EXIT_GATE_FAILED, EXIT_INPUT, EXIT_TARGET, EXIT_INTERNAL = 0, 1, 2, 3, 4


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
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


db_option = click.option(
    "--db", "db_url", envvar="EDGEGATE_DB", default=None, metavar="URL",
    help="SQLAlchemy URL of the experiment database (default sqlite:///.edgegate/edgegate.db; env EDGEGATE_DB).",
)




def main() -> None:
    cli(prog_name="edgegate")
