"""The ``edgegate`` command: a thin click layer over the library (parse, call, render, exit).

``app`` holds the group, the one error handler and the exit codes; each other module adds the
commands of one concern to the group when imported here.
"""

from edgegate.cli.app import (
    EXIT_GATE_FAILED,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_TARGET,
    cli,
    main,
)
from edgegate.cli import evidence, fleet, packs, runs  # noqa: F401  (register their commands)

__all__ = ["EXIT_GATE_FAILED", "EXIT_INPUT", "EXIT_INTERNAL", "EXIT_OK", "EXIT_TARGET", "cli", "main"]
