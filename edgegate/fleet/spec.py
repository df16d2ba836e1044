"""The fleet file: which pipelines on which devices, how to run them, what counts as a regression.

A pydantic schema on the config loader's base (``extra="forbid"``; a problem is one error
with file:line: field). Pipeline paths are relative to the fleet file and must exist;
devices are names, paths or ``tag:<tag>`` (expanded by ``fleet.matrix``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, ValidationInfo, field_validator

from edgegate.config import (
    Name,
    NamedSpecModel,
    NonNegativeInt,
    PositiveInt,
    SpecModel,
    context_base_dir,
    load_spec_file,
)
from edgegate.errors import EdgeGateError
from edgegate.metrics import get_metric

TAG_PREFIX = "tag:"
NonEmpty = Annotated[str, Field(min_length=1)]


class ExcludeSpec(SpecModel):
    pipeline: Name | None = None
    device: Name | None = None


class FleetSpec(NamedSpecModel):
    """A fleet file: the matrix, how to run it, and what counts as a regression."""

    description: str | None = None
    pipelines: Annotated[list[NonEmpty], Field(min_length=1)]  # paths, relative to the fleet file
    devices: Annotated[list[NonEmpty], Field(min_length=1)]  # names, paths or tag:<tag>
    exclude: list[ExcludeSpec] = Field(default_factory=list)
    devices_dir: str | None = None
    concurrency: PositiveInt = 4
    timeout_s: float = Field(default=3600.0, gt=0)
    lock_timeout_s: float | None = Field(default=None, gt=0)  # default: timeout_s
    confirm_reruns: NonNegativeInt = 1
    history: PositiveInt = 14
    # vs the previous night, as `edgegate compare --threshold`: 0.01, "2%", "latency=5%,default=0.01"
    threshold: Union[float, str, None] = None
    # metrics whose regression vs the previous night counts (default: all but load/compile time)
    watch: list[str] | None = None
    strict: bool = False
    evidence: Literal["on-pass", "always", "never"] = "on-pass"
    # a cell failing its gates exactly as on the previous night is reported; exit 1 for it too?
    known_failures_fail: bool = False

    @field_validator("pipelines")
    @classmethod
    def _pipelines_exist(cls, value: list[str], info: ValidationInfo) -> list[str]:
        base = context_base_dir(info)
        for item in value:
            path = base / item
            if not path.is_file():
                what = "not a file" if path.exists() else "file not found"
                raise ValueError(f"{what}: {os.path.normpath(path)} (paths are relative to the fleet file)")
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold_parses(cls, value: float | str | None) -> str | None:
        # edgegate.compare pulls in the statistics stack: only a fleet file with a threshold pays for it.
        from edgegate.compare import parse_threshold_option

        if value is None:
            return None
        text = str(value)
        try:
            parse_threshold_option(text)
        except EdgeGateError as exc:
            raise ValueError(exc.message.replace("--threshold", "threshold")) from None
        return text

    @field_validator("watch")
    @classmethod
    def _watch_known(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            try:
                get_metric(name)
            except EdgeGateError as exc:
                raise ValueError(exc.message) from None
        return value


def load_fleet(path: str | Path) -> FleetSpec:
    """Load and validate a fleet file (pipeline files must exist; paths relative to the file)."""
    return load_spec_file(path, FleetSpec)
