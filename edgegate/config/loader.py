"""The one loader for EdgeGate's YAML files: read the YAML, remember each field's line,
validate it with pydantic, and turn any problem into one SpecError naming
``file:line: field.path: problem``.

Pipeline, device and fleet files load through ``load_spec_file`` (or ``read_yaml`` and
``YamlDocument.validate``) into a ``SpecModel``. A PromptPack manifest reads the same way
with its own ``ErrorWording``, so its messages keep their words while the machinery
(duplicate keys, field paths, line numbers) exists once.

Every file is read within bounds (:mod:`edgegate.safe_load`): its size before it is read,
its nesting depth and its number of values (aliases expanded) while it is composed, before
the line walk and construction, so a hostile file is one error line, never a hang.
"""

from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo
from pydantic_core import ErrorDetails

from edgegate.errors import SpecError
from edgegate.safe_load import CONFIG_LIMITS, Limits, excerpt, read_bounded, size_text, too_deep

# A path through a file's fields: mapping keys and list indices, e.g. ("gates", 2).
FieldPath = tuple[Union[str, int], ...]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
GRAPH_PATTERN = r"^[a-z][a-z0-9_]*$"
# What a pattern mismatch tells the user to write instead of the bare regex.
_PATTERN_HINTS = {
    NAME_PATTERN: "lower-case letters, digits, '-' and '_', starting with a letter or digit",
    GRAPH_PATTERN: "lower-case letters, digits and '_', starting with a letter",
}

# Field types the file schemas share.
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
GraphName = Annotated[str, Field(pattern=GRAPH_PATTERN)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class FieldProblem(ValueError):
    """A model-level check that belongs to one field: the loader appends ``field``
    to the error's location so the message names it (and its line)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def render_field_path(parts: FieldPath) -> str:
    """``("model", "graphs", "pnet", "inputs", 0)`` -> ``model.graphs.pnet.inputs[0]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = excerpt(str(part))  # a hostile key must not make the message long
            out += f".{text}" if out else text
    return out


def display_path(path: Path) -> str:
    """``path`` relative to the cwd when it lies below it, else absolute."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path.absolute())


def resolve_against(base: Path, value: str) -> Path:
    """Absolute, normalised path of ``value`` relative to ``base``."""
    return Path(os.path.normpath(base / value))


def context_base_dir(info: ValidationInfo) -> Path:
    """The directory relative paths resolve against while validating: the file's
    (from the loader's context), else the cwd for a model built from a dict."""
    base = (info.context or {}).get("base_dir")
    return Path(base) if base is not None else Path.cwd()


# --------------------------------------------------------------------------- models


class SpecModel(BaseModel):
    """A schema loaded from a file: it remembers the file, its directory and each field's
    YAML line (from the loader's validation context), so later checks can name them."""

    # strict: YAML already types its scalars; "8" for an int is a mistake, not a hint.
    model_config = ConfigDict(extra="forbid", strict=True)

    _source_path: Path | None = PrivateAttr(default=None)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _lines: dict[FieldPath, int] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        ctx = context if isinstance(context, dict) else {}
        if "source_path" in ctx:
            self._source_path = Path(ctx["source_path"])
        if "base_dir" in ctx:
            self._base_dir = Path(ctx["base_dir"])
        self._lines = dict(ctx.get("lines", {}))

    @property
    def source_path(self) -> Path | None:
        """The file as the caller named it; None for a model built from a dict."""
        return self._source_path

    @property
    def base_dir(self) -> Path:
        """The file's absolute directory, against which relative paths in it resolve."""
        return self._base_dir

    @property
    def source_label(self) -> str:
        """How messages name the file: its path as given (a model built from a dict has
        none; NamedSpecModel names it by its ``name`` then)."""
        return str(self._source_path)

    def resolve_path(self, value: str) -> Path:
        """Absolute, normalised path of ``value`` relative to the file's directory."""
        return resolve_against(self._base_dir, value)

    def line_of(self, *field: str | int) -> int | None:
        """YAML line of a field path, e.g. ``line_of("device")``; None when unknown."""
        return self._lines.get(tuple(field))

    def error(self, field_path: FieldPath, problem: str) -> SpecError:
        """A SpecError naming this file, the field path and its line."""
        return SpecError(
            self.source_label, render_field_path(field_path) or None, problem,
            self.line_of(*field_path),
        )


class NamedSpecModel(SpecModel):
    """A file schema with a ``name``, which names it in messages when it has no file."""

    name: Name

    @property
    def source_label(self) -> str:
        return str(self._source_path or self.name)


# --------------------------------------------------------------------------- wording


def _yaml_type(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _unwrap(tp: Any) -> Any:
    """Strip Annotated, and Optional[Model] down to Model."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(root: type[BaseModel], parts: list[str | int]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``parts`` (for 'allowed fields')."""
    tp: Any = root
    for part in parts:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp = field.annotation
        elif origin is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict and isinstance(part, str):
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


class ErrorWording:
    """The words of the loader's messages that differ between file types. This one is
    for pipeline, device and fleet files; a PromptPack manifest subclasses it."""

    def duplicate_key(self, key: str, first_line: int) -> str:
        return f"duplicate key '{key}' (first at line {first_line})"

    def problem(self, err: ErrorDetails, parts: list[str | int], root: type[BaseModel]) -> str:
        """One pydantic error at ``parts`` (a path through the file) of a ``root`` model."""
        kind = err["type"]
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            model = _model_at(root, parts[:-1])
            allowed = f" (allowed: {', '.join(model.model_fields)})" if model is not None else ""
            return f"unknown field '{excerpt(str(parts[-1]))}'{allowed}"
        if kind == "missing":
            return "field required"
        if kind == "string_pattern_mismatch":
            pattern = ctx.get("pattern")
            hint = _PATTERN_HINTS.get(str(pattern))
            shown = excerpt(str(err["input"]))
            return f"'{shown}' does not match {pattern}" + (f" (use {hint})" if hint else "")
        if kind == "too_short":
            n = ctx.get("min_length", 1)
            return f"needs at least {n} item{'s' if n != 1 else ''}, got {ctx.get('actual_length', 0)}"
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            return f"input should be a mapping (key: value), got {_yaml_type(err['input'])}"
        if kind == "list_type":
            return f"input should be a list, got {_yaml_type(err['input'])}"
        msg: str = err["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        if msg[:1].isupper() and msg[1:2].islower():
            msg = msg[0].lower() + msg[1:]
        return excerpt(msg, 300)


SPEC_WORDING = ErrorWording()


# --------------------------------------------------------------------------- reading

_M = TypeVar("_M", bound=BaseModel)


def _path_from_loc(data: Any, loc: tuple[str | int, ...]) -> list[str | int]:
    """Turn a pydantic ``loc`` into a path through the YAML data, dropping the
    union/validator tags pydantic inserts (they are not keys in the file)."""
    parts: list[str | int] = []
    current = data
    for i, el in enumerate(loc):
        if isinstance(el, str) and "[" in el:  # '[key]', 'function-after[...]'
            continue
        if isinstance(current, dict) and el in current:
            parts.append(el)
            current = current[el]
        elif isinstance(current, list) and isinstance(el, int) and 0 <= el < len(current):
            parts.append(el)
            current = current[el]
        elif i == len(loc) - 1 and isinstance(el, str):
            parts.append(el)  # a missing field
            current = None
    return parts


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file read as a mapping, with the line of every field path in it."""

    file: str  # as messages name it
    data: dict[str, Any]
    lines: dict[FieldPath, int]  # field path -> line of its key (or of its list item)
    wording: ErrorWording = SPEC_WORDING

    def line_of(self, *field: str | int) -> int | None:
        return self.lines.get(tuple(field))

    def validation_error(self, exc: ValidationError, root: type[BaseModel]) -> SpecError:
        """The first error of ``exc`` as a SpecError naming the field path and the line
        of its nearest enclosing field that is in the file."""
        err = exc.errors(include_url=False)[0]
        parts = _path_from_loc(self.data, tuple(err["loc"]))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem) and cause.field:
            parts.append(cause.field)
        problem = self.wording.problem(err, parts, root)
        line = None
        for n in range(len(parts), 0, -1):
            line = self.lines.get(tuple(parts[:n]))
            if line is not None:
                break
        return SpecError(self.file, render_field_path(tuple(parts)) or None, problem, line)

    def validate(self, model: type[_M], context: dict[str, Any] | None = None) -> _M:
        """``model`` validated from the data; a problem is one SpecError."""
        try:
            return model.model_validate(self.data, context=context)
        except ValidationError as exc:
            raise self.validation_error(exc, model) from None


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with ``limits`` checked while the file is composed, before
    anything walks or constructs it: nesting depth, and the number of values counting what
    every alias repeats (a "billion laughs" bomb is a few KB that expands to billions of
    values). A value over a bound stops the parse at once with one SpecError and its line.
    Composing is PyYAML's one recursive step, so the depth bound also keeps it far from
    Python's recursion limit."""

    def __init__(self, text: str, file: str, limits: Limits) -> None:
        super().__init__(text)
        self.file = file
        self.limits = limits
        self.depth = 0
        self.values = 0  # composed so far, aliases counted as the values they repeat
        self.aliased = False
        self.anchored_sizes: dict[int, int] = {}  # id(anchored node) -> its values

    def count(self, n: int, line: int) -> None:
        self.values += n
        if self.values > self.limits.max_values:
            what = " (counting what its aliases repeat)" if self.aliased else ""
            problem = (f"more than {self.limits.max_values:,} values{what}; "
                       f"a {self.limits.kind} is limited to {self.limits.max_values:,}")
            raise SpecError(self.file, None, problem, line)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self.anchored_sizes.get(id(node))
            if size is None:  # its anchor is still being composed: the alias is inside it
                problem = f"alias '*{excerpt(str(event.anchor))}' refers to a value that contains it"
                raise SpecError(self.file, None, problem, line)
            self.aliased = True
            self.count(size, line)
            return node
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise too_deep(self.file, self.limits, line)
        start = self.values
        self.count(1, line)
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if getattr(event, "anchor", None) is not None:
            self.anchored_sizes[id(node)] = self.values - start
        return node


def _collect_lines(
    node: yaml.Node, path: FieldPath, out: dict[FieldPath, int], file: str, wording: ErrorWording,
    walked: set[int],
) -> None:
    """Map each field path to the YAML line of its key (or of its list item). A collection
    that an alias repeats is walked once, where it is defined: its fields have lines there,
    and a path through the alias takes the alias's line (its nearest enclosing field)."""
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if id(node) in walked:
            return
        walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            sub = path + (key,)
            line = key_node.start_mark.line + 1
            if sub in out:
                problem = wording.duplicate_key(excerpt(key), out[sub])
                raise SpecError(file, render_field_path(sub), problem, line)
            out[sub] = line
            _collect_lines(value_node, sub, out, file, wording, walked)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = path + (i,)
            out[sub] = item.start_mark.line + 1
            _collect_lines(item, sub, out, file, wording, walked)


def parse_yaml(
    text: str, file: str, wording: ErrorWording = SPEC_WORDING, limits: Limits = CONFIG_LIMITS
) -> YamlDocument:
    """Parse ``text`` (the contents of ``file``) as a mapping of fields; a syntax error,
    a duplicate key, an empty file, a non-mapping, or a file over ``limits`` (size, depth,
    values with aliases expanded: checked before the file is walked or constructed) is a
    SpecError with its line."""
    if len(text) > limits.max_bytes:
        raise SpecError(file, None, f"larger than the {size_text(limits.max_bytes)} a {limits.kind} may have")
    loader = BoundedLoader(text, file, limits)
    try:
        node = loader.get_single_node()
        lines: dict[FieldPath, int] = {}
        if node is not None:
            _collect_lines(node, (), lines, file, wording, set())
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context and exc.context_mark is not None:
            problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise SpecError(
            file, None, f"invalid YAML: {excerpt(problem, 200)}", None if mark is None else mark.line + 1
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(file, None, f"invalid YAML: {excerpt(str(exc), 200)}") from None
    finally:
        loader.dispose()
    if data is None:
        raise SpecError(file, None, "file is empty; expected a mapping of fields")
    if not isinstance(data, dict):
        raise SpecError(file, None, f"expected a mapping of fields, got {type(data).__name__}", 1)
    return YamlDocument(file, data, lines, wording)


def read_yaml(
    path: Path, file: str, wording: ErrorWording = SPEC_WORDING, limits: Limits = CONFIG_LIMITS
) -> YamlDocument:
    """Read and parse the YAML file at ``path`` within ``limits`` (its size is checked
    before it is read); messages name it ``file``."""
    try:
        raw = read_bounded(path, file, limits)
    except FileNotFoundError:
        raise SpecError(file, None, "file not found") from None
    except IsADirectoryError:
        raise SpecError(file, None, "is a directory, expected a YAML file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(file, None, "not UTF-8 text") from None
    return parse_yaml(text, file, wording, limits)


def load_spec_file(path: str | Path, model: type[_M]) -> _M:
    """Read a YAML file into `model`, paths in it relative to the file; a problem is one
    SpecError naming the file, line and field."""
    source = Path(path)
    doc = read_yaml(source, str(path))
    context = {"base_dir": source.absolute().parent, "source_path": source, "lines": doc.lines}
    return doc.validate(model, context)
