"""The schema of a PromptPack's ``manifest.yaml`` and the rules that tie its fields together.

A manifest names the pack (name, version), says what its samples are (modality, task,
input), lists its splits, scorers, classes and sources, and pins every other file of the
pack by sha256. ``read_manifest`` validates one (every problem a ``file:line: field:``
SpecError); the samples files are read by :mod:`edgegate.packs.promptpack`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import ErrorDetails

from edgegate.config import ErrorWording, YamlDocument, parse_yaml
from edgegate.errors import PackIntegrityError, SpecError
from edgegate.packs.scorers import scorer_names, unknown_scorer_message
from edgegate.safe_load import MANIFEST_LIMITS, excerpt, read_bounded

MANIFEST_NAME = "manifest.yaml"


class Modality(str, Enum):
    VISION = "vision"
    TEXT = "text"


class Task(str, Enum):
    DETECTION = "detection"  # the face packs: fixed image size, one class, boxes only
    INTENT_CLASSIFICATION = "intent-classification"
    LANGUAGE_MODELING = "language-modeling"
    IMAGE_CLASSIFICATION = "image-classification"
    OBJECT_DETECTION = "object-detection"  # COCO-style: boxes with a class name each
    TEXT_CLASSIFICATION = "text-classification"


# Which modality each task reads, and whether the manifest must list its classes.
TASK_MODALITY = {
    Task.DETECTION: Modality.VISION,
    Task.INTENT_CLASSIFICATION: Modality.TEXT,
    Task.LANGUAGE_MODELING: Modality.TEXT,
    Task.IMAGE_CLASSIFICATION: Modality.VISION,
    Task.OBJECT_DETECTION: Modality.VISION,
    Task.TEXT_CLASSIFICATION: Modality.TEXT,
}
# image- and text-classification list their classes too, but may list none: a pack whose
# samples carry no label is scored by agreement with the FP32 reference only.
_TASK_NEEDS_CLASSES = {Task.DETECTION, Task.INTENT_CLASSIFICATION, Task.OBJECT_DETECTION}
# The face detector's pack predates images of any size; its adapter reads the fixed size.
_TASK_NEEDS_IMAGE_SIZE = {Task.DETECTION}
_MODALITY_INPUT_KIND = {Modality.VISION: "image", Modality.TEXT: "text"}


class StrictModel(BaseModel):
    """Base of the manifest and record schemas: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageInputSpec(StrictModel):
    kind: Literal["image"]
    color: Literal["RGB"]
    # None: the images' sizes vary (the adapter resizes); set: every image has this size
    height: int | None = Field(default=None, gt=0)
    width: int | None = Field(default=None, gt=0)
    dtype: Literal["uint8"]


class TextInputSpec(StrictModel):
    """Text samples: raw UTF-8 strings; tokenizing is the adapter's job, not the pack's."""

    kind: Literal["text"]
    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")  # BCP 47, e.g. en
    encoding: Literal["utf-8"] = "utf-8"
    max_chars: int | None = Field(default=None, gt=0)  # checked on every sample when set


InputSpec = Annotated[ImageInputSpec | TextInputSpec, Field(discriminator="kind")]


class SplitSpec(StrictModel):
    samples: str
    count: int = Field(ge=0)


class SourceSpec(StrictModel):
    name: str
    # person/background: the face pack's photos; images/text: a pack's samples as given
    role: Literal["person", "background", "text", "images"]
    package: str | None = None  # None: written for the pack (no package ships it)
    loader: str
    license: str
    attribution: str
    # of the annotation or table file the samples were read from (COCO JSON, CSV, JSONL)
    sha256: str | None = None


class BuildSpec(StrictModel):
    script: str
    seed: int
    args: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)


class PackManifest(StrictModel):
    name: str = Field(min_length=1)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    modality: Modality
    task: Task
    description: str
    input: InputSpec
    splits: dict[str, SplitSpec] = Field(min_length=1)
    scorers: list[str] = Field(min_length=1)
    classes: list[str] = Field(default_factory=list)  # required for detection tasks and intents
    sources: list[SourceSpec] = Field(default_factory=list)
    build: BuildSpec | None = None
    files: dict[str, str] = Field(min_length=1)


class PackWording(ErrorWording):
    """How a pack's manifest and samples lines word the loader's problems (their own
    words since before the loader was shared; tests and users match them)."""

    def duplicate_key(self, key: str, first_line: int) -> str:
        return "duplicate key"

    def problem(self, err: ErrorDetails, parts: list[str | int], root: type[BaseModel]) -> str:
        if err["type"] == "extra_forbidden":
            return "unknown key; remove it or check its spelling"
        if err["type"] == "missing":
            return "required key is missing"
        return f"{err['msg']} (got {excerpt(repr(err.get('input')))})"


PACK_WORDING = PackWording()


def read_manifest(manifest_path: Path) -> tuple[PackManifest, bytes, YamlDocument]:
    """The validated manifest, its bytes (hashed into the pack's digest) and the YAML
    document with its lines, for the checks that follow."""
    file = str(manifest_path)
    try:
        raw = read_bounded(manifest_path, file, MANIFEST_LIMITS)
    except OSError as exc:
        raise SpecError(file, None, f"cannot read the manifest ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(file, None, "manifest is not UTF-8 text") from exc
    doc = parse_yaml(text, file, PACK_WORDING, MANIFEST_LIMITS)
    manifest = doc.validate(PackManifest)
    validate_manifest(manifest, doc)
    return manifest, raw, doc


def check_relative(file: str, field: str, rel: str, line: int | None) -> None:
    """A path named in a pack must stay inside it (relative, POSIX, no ``..``)."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or "\\" in rel or not p.parts:
        problem = f"path '{rel}' must be relative to the pack and stay inside it"
        raise SpecError(file, field, problem, line)


def link_escape(root: Path, rel: str, checked: set[str] | None = None) -> str | None:
    """The problem when ``rel`` (a path in the pack at ``root``, an absolute resolved path)
    or a directory on its way is a symlink leading outside the pack, or a symlink loop;
    None when it stays inside. A symlink from one place in the pack to another is fine.
    ``checked`` remembers the directories found inside, so a pack of many files in few
    directories costs about one lstat a file."""
    parts = PurePosixPath(rel).parts
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if checked is not None and prefix in checked:
            continue
        path = root.joinpath(*parts[:i])
        if path.is_symlink():
            try:
                target = path.resolve()
            except (OSError, RuntimeError):  # RuntimeError: a symlink loop before Python 3.13
                return f"'{prefix}' is a symlink loop"
            if not target.is_relative_to(root):
                return (f"'{prefix}' is a symlink leading outside the pack (to {target}); "
                        "a pack holds its own files: copy the file in")
        if checked is not None and i < len(parts):
            checked.add(prefix)
    return None


def _validate_task(manifest: PackManifest, doc: YamlDocument) -> None:
    """modality, task, input kind and classes must describe the same kind of pack."""
    file = doc.file
    task, modality = manifest.task, manifest.modality
    if TASK_MODALITY[task] is not modality:
        problem = (
            f"task '{task.value}' needs modality '{TASK_MODALITY[task].value}', "
            f"not '{modality.value}'"
        )
        raise SpecError(file, "task", problem, doc.line_of("task"))
    kind = _MODALITY_INPUT_KIND[modality]
    if manifest.input.kind != kind:
        problem = f"'{manifest.input.kind}' does not fit modality '{modality.value}' (use kind: {kind})"
        raise SpecError(file, "input.kind", problem, doc.line_of("input", "kind"))
    if task in _TASK_NEEDS_IMAGE_SIZE and isinstance(manifest.input, ImageInputSpec):
        for dim in ("height", "width"):
            if getattr(manifest.input, dim) is None:
                problem = f"task '{task.value}' needs the images' fixed {dim}"
                raise SpecError(file, f"input.{dim}", problem, doc.line_of("input"))
    if task in _TASK_NEEDS_CLASSES and not manifest.classes:
        problem = f"task '{task.value}' needs the list of its classes"
        raise SpecError(file, "classes", problem, doc.line_of("classes"))
    seen: set[str] = set()
    for i, name in enumerate(manifest.classes):
        if name in seen:
            line = doc.line_of("classes", i)
            raise SpecError(file, f"classes[{i}]", f"duplicate class '{name}'", line)
        seen.add(name)


def validate_manifest(manifest: PackManifest, doc: YamlDocument) -> None:
    """The rules between fields that the schema alone cannot say."""
    file = doc.file
    _validate_task(manifest, doc)
    known = set(scorer_names())
    for i, scorer in enumerate(manifest.scorers):
        if scorer not in known:
            line = doc.line_of("scorers", i)
            raise SpecError(file, f"scorers[{i}]", unknown_scorer_message(scorer), line)
    for rel, digest in manifest.files.items():
        line = doc.line_of("files", rel)
        check_relative(file, f"files.{rel}", rel, line)
        if not is_sha256(digest):
            raise SpecError(file, f"files.{rel}", f"'{digest}' is not a sha256 hex digest", line)
    for i, source in enumerate(manifest.sources):
        if source.sha256 is not None and not is_sha256(source.sha256):
            line = doc.line_of("sources", i, "sha256")
            problem = f"'{source.sha256}' is not a sha256 hex digest"
            raise SpecError(file, f"sources[{i}].sha256", problem, line)
    for split, spec in manifest.splits.items():
        field = f"splits.{split}.samples"
        line = doc.line_of("splits", split, "samples")
        check_relative(file, field, spec.samples, line)
        if spec.samples not in manifest.files:
            raise PackIntegrityError(
                f"{file}: {field}: '{spec.samples}' is not listed in files; rebuild the pack"
            )


def is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
