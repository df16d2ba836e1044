"""One error hierarchy for the library; the CLI maps each class to an exit code.

Messages are one line and say where (file, field path, line), what is wrong and,
where it helps, how to fix it. The CLI prints ``error: <message>`` and exits with
``exit_code``; it never prints a traceback for an ``EdgeGateError``.
"""

from __future__ import annotations


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
