"""One error hierarchy for the library; the CLI maps each class to an exit code.

Messages are one line and say where (file, field path, line), what is wrong and,
where it helps, how to fix it. The CLI prints ``error: <message>`` and exits with
``exit_code``; it never prints a traceback for an ``EdgeGateError``.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import traceback
from collections.abc import Sequence
from pathlib import Path


class EdgeGateError(Exception):
    """Base of every error EdgeGate raises on purpose."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(EdgeGateError):
    """Bad input from the user: a file, a field, a flag. Exit code 2."""

    exit_code = 2


class SpecError(InputError):
    """A pipeline, device or PromptPack file is invalid."""

    def __init__(
        self,
        file: str,
        field: str | None,
        problem: str,
        line: int | None = None,
    ) -> None:
        where = str(file)
        if line is not None:
            where += f":{line}"
        if field:
            where += f": {field}"
        super().__init__(f"{where}: {problem}")
        self.file = str(file)
        self.field = field
        self.problem = problem
        self.line = line


class GateExpressionError(InputError):
    """A gate expression does not parse or names an unknown metric."""


class UnknownNameError(InputError):
    """A registry lookup (metric, scorer, target, device) found nothing."""


class PackIntegrityError(InputError):
    """A PromptPack file is missing or its sha256 does not match the manifest."""


class CompileError(EdgeGateError):
    """The target could not compile the model (e.g. an op the NPU does not support)."""

    exit_code = 3


class TargetError(EdgeGateError):
    """The target failed while benchmarking or running inference."""

    exit_code = 3


class VerificationError(EdgeGateError):
    """A signature, statement or artifact of an evidence bundle does not verify. Exit code 1."""

    exit_code = 1


class GateFailure(EdgeGateError):
    """The run completed and at least one gate failed. Exit code 1."""

    exit_code = 1


class EnvironmentFailure(EdgeGateError):
    """The machine failed us, not the input: a full or read-only disk, a denied path, a
    damaged database. Exit code 3, like a target or tool failure."""

    exit_code = 3


class InternalError(EdgeGateError):
    """A bug: an exception nothing above expected. Exit code 4 (never 1, which means a gate
    failed); the CLI prints one line and writes the traceback to a log file."""

    exit_code = 4


# errno values that say "the disk or its permissions", with the words a user searches for.
_OS_CAUSES = {
    "ENOSPC": "disk full",
    "EDQUOT": "disk quota exceeded",
    "EROFS": "read-only file system",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EMFILE": "too many open files",
    "EIO": "input/output error",
}


def os_error(exc: OSError, doing: str = "", path: object = None) -> EdgeGateError:
    """An OSError as one line naming the path (`path` when the error names none: a write
    that hit a full disk) and the cause ("disk full", not a protobuf error); an environment
    failure (3), except a missing file or directory, which is bad input (2)."""
    name = errno.errorcode.get(exc.errno or 0, "")
    # an OSError without errno is a library's complaint (PIL: "image file is truncated")
    cause = _OS_CAUSES.get(name) or (exc.strerror or str(exc) or type(exc).__name__)
    paths = [p for p in (exc.filename, exc.filename2) if p is not None] or ([path] if path is not None else [])
    where = " -> ".join(str(p) for p in paths)
    line = f"{doing + ': ' if doing else ''}{where + ': ' if where else ''}{cause}"
    if name in ("ENOENT", "ENOTDIR", "EISDIR"):
        return InputError(line)
    return EnvironmentFailure(line)


def crash_log(exc: BaseException, log_dirs: Sequence[Path]) -> Path | None:
    """Write `exc`'s traceback to a new file in the first writable directory of `log_dirs`
    and return its path (None when none is writable): the terminal gets one line, the
    traceback stays for the bug report."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for d in log_dirs:
        try:
            path = Path(d) / f"edgegate-error-{stamp}-{os.getpid()}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None
