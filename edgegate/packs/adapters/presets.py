"""What the generic adapters configured in YAML ("presets") share.

A preset is a name a pipeline gives as ``model.adapter`` (``image-classification``, ...)
with three parts:

* a pydantic model of its ``model.adapter_options`` (``PresetOptions``: unknown keys are
  errors, YAML scalars are taken as typed), validated with the pipeline's directory in
  the context so file options resolve against it;
* ``build(options, context)``: the adapter, checked against what the pipeline declares
  (``PresetContext``: its graphs' inputs and outputs, its directory, the pack's classes).
  A mismatch is an ``OptionError`` naming the option at fault;
* the adapter itself: plain host glue that implements ``predict_sample`` and
  ``expected_inputs`` (``edgegate.packs.adapters.base``), keeping no per-sample state
  (the lockstep batcher runs one sample per thread on one adapter).

``edgegate.run.context.make_adapter`` turns a validation error or an OptionError into one
``file:line: model.adapter_options.<field>: problem`` SpecError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from edgegate.config import context_base_dir, resolve_against
from edgegate.packs.adapters.base import Adapter
from edgegate.packs.classification import TOP_K


class OptionError(ValueError):
    """An adapter option that does not fit the pipeline: ``field`` is its name (or dotted
    path) under ``model.adapter_options``; None for the options as a whole."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


class PresetOptions(BaseModel):
    """Options every preset takes."""

    # strict: YAML already types its scalars ("8" for an int is a mistake, not a hint)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    graph: str | None = Field(None, description="the graph the adapter runs (default: the pipeline's only graph)")


def existing_file(value: str, info: ValidationInfo) -> str:
    """A field validator's check that ``value`` names a file relative to the pipeline file."""
    path = resolve_against(context_base_dir(info), value)
    if not path.is_file():
        what = "not a file" if path.exists() else "file not found"
        raise ValueError(f"{what}: {path} (paths are relative to the pipeline file)")
    return value


@dataclass(frozen=True)
class TensorInfo:
    """One declared graph input."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class GraphInfo:
    """What the pipeline declares for one graph (``model.graphs.<name>``)."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[str, ...]

    def field(self, index: int) -> str:
        """How messages name input ``index``: ``model.graphs.<name>.inputs[i]``."""
        return f"model.graphs.{self.name}.inputs[{index}]"


@dataclass(frozen=True)
class PresetContext:
    graphs: Mapping[str, GraphInfo]  # in the pipeline's order
    base_dir: Path  # the pipeline file's directory
    # The pack's class names in manifest order; called only when a preset needs them.
    pack_classes: Callable[[], Sequence[str]]

    def graph(self, options: PresetOptions) -> GraphInfo:
        """The graph ``options.graph`` names, or the pipeline's only graph."""
        if options.graph is None:
            if len(self.graphs) != 1:
                raise OptionError("graph", f"the pipeline declares {len(self.graphs)} graphs "
                                  f"({', '.join(self.graphs)}); say which one the adapter runs")
            return next(iter(self.graphs.values()))
        if options.graph not in self.graphs:
            raise OptionError("graph", f"'{options.graph}' is not a graph of model.graphs "
                              f"(graphs: {', '.join(self.graphs)})")
        return self.graphs[options.graph]

    def resolve(self, value: str) -> Path:
        return resolve_against(self.base_dir, value)


def select_input(graph: GraphInfo, name: str | None, field: str = "input") -> tuple[int, TensorInfo]:
    """(index, declared input) named ``name``, or the graph's only input."""
    if name is None:
        if len(graph.inputs) != 1:
            names = ", ".join(t.name for t in graph.inputs)
            raise OptionError(field, f"graph '{graph.name}' has {len(graph.inputs)} inputs ({names}); "
                              "say which one the adapter feeds")
        return 0, graph.inputs[0]
    for i, t in enumerate(graph.inputs):
        if t.name == name:
            return i, t
    names = ", ".join(t.name for t in graph.inputs)
    raise OptionError(field, f"graph '{graph.name}' has no input '{name}' (inputs: {names})")


def select_outputs(graph: GraphInfo, names: Sequence[str] | None, roles: Sequence[str], field: str) -> tuple[int, ...]:
    """Indices (into the graph's declared outputs) of the outputs playing ``roles``: the
    named ones, else the first len(roles) declared outputs."""
    wanted = ", ".join(roles)
    if names is None:
        if len(graph.outputs) < len(roles):
            raise OptionError(field, f"needs {len(roles)} graph outputs ({wanted}) but graph "
                              f"'{graph.name}' declares {len(graph.outputs)}")
        return tuple(range(len(roles)))
    if len(names) != len(roles):
        raise OptionError(field, f"give {len(roles)} output names ({wanted}), got {len(names)}")
    missing = [n for n in names if n not in graph.outputs]
    if missing:
        raise OptionError(field, f"graph '{graph.name}' has no output '{missing[0]}' "
                          f"(outputs: {', '.join(graph.outputs)})")
    return tuple(graph.outputs.index(n) for n in names)


def check_dtype(graph: GraphInfo, index: int, dtype: str) -> None:
    declared = graph.inputs[index].dtype
    if declared != dtype:
        raise OptionError("dtype", f"feeds {dtype} but {graph.field(index)}.dtype is {declared}")


def check_shape(graph: GraphInfo, index: int, feeds: tuple[int, ...], field: str, why: str) -> None:
    """The shape the adapter feeds must be the declared one; ``why`` says what set it."""
    declared = graph.inputs[index].shape
    if tuple(declared) != tuple(feeds):
        raise OptionError(field, f"{why} feeds {list(feeds)} but {graph.field(index)}.shape is {list(declared)}")


def names_file(value: Any, info: ValidationInfo) -> Any:
    """A class_names option given as a file: it must exist (relative to the pipeline file)."""
    return existing_file(value, info) if isinstance(value, str) else value


# The option every preset with a class output takes: a list, or a file of one name per line.
ClassNamesOption = Annotated[
    list[str] | str | None,
    AfterValidator(names_file),
    Field(description="the model's class names in output order, a list or a file of one per line "
                      "(default: the pack's classes)"),
]


def class_names(value: Sequence[str] | str | None, ctx: PresetContext) -> tuple[str, ...]:
    """The model's class names in output-index order: the list given, the lines of the
    file given (relative to the pipeline file; blank lines skipped), else the pack's classes."""
    if value is None:
        names = tuple(ctx.pack_classes())
    elif isinstance(value, str):
        path = ctx.resolve(value)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise OptionError("class_names", f"cannot read {path}: {exc}") from None
        names = tuple(line.strip() for line in lines if line.strip())
        if not names:
            raise OptionError("class_names", f"{path} lists no class names (one per line)")
    else:
        names = tuple(value)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise OptionError("class_names", f"duplicate class name '{name}'")
        seen.add(name)
    return names


def top_labels(scores: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The names of the TOP_K highest scores, best first (ties: lower index first): what the
    classification scorer's top-k accuracy reads."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:TOP_K]
    return np.asarray([names[i] for i in order], dtype=str)


@dataclass(frozen=True)
class Preset:
    """A generic adapter a pipeline names by ``name``."""

    name: str
    options: type[PresetOptions]
    build: Callable[[Any, PresetContext], Adapter]
    modality: str  # the PromptPack modality it reads: "vision" or "text"
    summary: str  # one line for help and listings
