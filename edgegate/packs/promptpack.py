"""Load and verify a PromptPack: a versioned evaluation set with a hashed manifest.

A pack is a directory holding ``manifest.yaml``, one JSONL file of samples per
split and the files those samples name. The manifest lists the sha256 of every
other file in the pack, so the manifest's own hash (``PromptPack.digest``) pins
the whole pack: two runs with the same digest scored the same bytes.

The task fixes the record of a JSONL line and what a ``Sample`` carries:

* ``detection`` (vision): ``{"id", "image", "boxes"}``; the sample's image file is hashed.
* ``intent-classification`` (text): ``{"id", "text", "label"}``, label one of ``classes``.
* ``language-modeling`` (text): ``{"id", "text"}``.

A text sample's ``sha256`` is the hash of its UTF-8 text (the JSONL file itself is
hashed in ``files:`` like every other file).
"""

from __future__ import annotations

import hashlib
import json
import logging
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Callable, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from edgegate.artifacts import sha256_file
from edgegate.config import ErrorWording, YamlDocument, parse_yaml, render_field_path
from edgegate.errors import PackIntegrityError, SpecError, UnknownNameError
from edgegate.packs.sample import Sample
from edgegate.packs.scorers import scorer_names, unknown_scorer_message

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.yaml"


class Modality(str, Enum):
    VISION = "vision"
    TEXT = "text"


class Task(str, Enum):
    DETECTION = "detection"
    INTENT_CLASSIFICATION = "intent-classification"
    LANGUAGE_MODELING = "language-modeling"


# Which modality each task reads, and whether the manifest must list its classes.
_TASK_MODALITY = {
    Task.DETECTION: Modality.VISION,
    Task.INTENT_CLASSIFICATION: Modality.TEXT,
    Task.LANGUAGE_MODELING: Modality.TEXT,
}
_TASK_NEEDS_CLASSES = {Task.DETECTION, Task.INTENT_CLASSIFICATION}
_MODALITY_INPUT_KIND = {Modality.VISION: "image", Modality.TEXT: "text"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageInputSpec(_Strict):
    kind: Literal["image"]
    color: Literal["RGB"]
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    dtype: Literal["uint8"]


class TextInputSpec(_Strict):
    """Text samples: raw UTF-8 strings; tokenizing is the adapter's job, not the pack's."""

    kind: Literal["text"]
    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")  # BCP 47, e.g. en
    encoding: Literal["utf-8"] = "utf-8"
    max_chars: int | None = Field(default=None, gt=0)  # checked on every sample when set


InputSpec = Annotated[Union[ImageInputSpec, TextInputSpec], Field(discriminator="kind")]


class SplitSpec(_Strict):
    samples: str
    count: int = Field(ge=0)


class SourceSpec(_Strict):
    name: str
    role: Literal["person", "background", "text"]
    package: str | None = None  # None: written for the pack (no package ships it)
    loader: str
    license: str
    attribution: str


class BuildSpec(_Strict):
    script: str
    seed: int
    args: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)


class PackManifest(_Strict):
    name: str = Field(min_length=1)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    modality: Modality
    task: Task
    description: str
    input: InputSpec
    splits: dict[str, SplitSpec] = Field(min_length=1)
    scorers: list[str] = Field(min_length=1)
    classes: list[str] = Field(default_factory=list)  # required for detection and intents
    sources: list[SourceSpec] = Field(default_factory=list)
    build: BuildSpec | None = None
    files: dict[str, str] = Field(min_length=1)


class DetectionRecord(_Strict):
    """One line of a detection split's JSONL file."""

    id: str = Field(min_length=1)
    image: str
    boxes: list[tuple[float, float, float, float]]
    source: list[str] = Field(default_factory=list)
    background: str | None = None


class IntentRecord(_Strict):
    """One line of an intent-classification split: an utterance and its intent."""

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    label: str = Field(min_length=1)


class TextRecord(_Strict):
    """One line of a language-modeling split: a passage."""

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)


class PromptPack:
    """A loaded pack. Build it with :func:`load_promptpack`."""

    def __init__(
        self,
        root: Path,
        manifest_path: Path,
        manifest: PackManifest,
        digest: str,
        samples_by_split: dict[str, list[Sample]],
    ) -> None:
        self.root = root
        self.manifest_path = manifest_path
        self.manifest = manifest
        self.digest = digest
        self._samples = samples_by_split

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def modality(self) -> Modality:
        return self.manifest.modality

    @property
    def task(self) -> Task:
        return self.manifest.task

    @property
    def splits(self) -> list[str]:
        return list(self.manifest.splits)

    def _split(self, split: str) -> list[Sample]:
        if split not in self._samples:
            raise UnknownNameError(
                f"pack '{self.name}' has no split '{split}'; splits: {', '.join(self.splits)}"
            )
        return self._samples[split]

    def samples(self, split: str, limit: int | None = None) -> list[Sample]:
        """The split's samples in file order; ``limit`` keeps the first ``limit``."""
        samples = self._split(split)
        if limit is None:
            return list(samples)
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        return samples[:limit]

    def split_digest(self, split: str) -> str:
        """sha256 over the split's samples file hash, then each sample's id and image hash."""
        samples = self._split(split)
        samples_file = self.manifest.splits[split].samples
        digest = hashlib.sha256()
        digest.update(f"{samples_file}\t{self.manifest.files[samples_file]}\n".encode())
        for sample in samples:
            digest.update(f"{sample.id}\t{sample.sha256}\n".encode())
        return f"sha256:{digest.hexdigest()}"

    def __repr__(self) -> str:
        return f"PromptPack({self.name!r}, version={self.version!r}, digest={self.digest[:19]}...)"


# --- reading the manifest --------------------------------------------------------


class _PackWording(ErrorWording):
    """How a pack's manifest and samples lines word the loader's problems (their own
    words since before the loader was shared; tests and users match them)."""

    def duplicate_key(self, key: str, first_line: int) -> str:
        return "duplicate key"

    def problem(self, err: ErrorDetails, parts: list[str | int], root: type[BaseModel]) -> str:
        if err["type"] == "extra_forbidden":
            return "unknown key; remove it or check its spelling"
        if err["type"] == "missing":
            return "required key is missing"
        return f"{err['msg']} (got {err.get('input')!r})"


_WORDING = _PackWording()


def _read_manifest(manifest_path: Path) -> tuple[PackManifest, bytes, YamlDocument]:
    """The validated manifest, its bytes (hashed into the pack's digest) and the YAML
    document with its lines, for the checks that follow."""
    file = str(manifest_path)
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        raise SpecError(file, None, f"cannot read the manifest ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(file, None, "manifest is not UTF-8 text") from exc
    doc = parse_yaml(text, file, _WORDING)
    return doc.validate(PackManifest), raw, doc


def _check_relative(file: str, field: str, rel: str, line: int | None) -> None:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or "\\" in rel or not p.parts:
        problem = f"path '{rel}' must be relative to the pack and stay inside it"
        raise SpecError(file, field, problem, line)


def _validate_task(manifest: PackManifest, doc: YamlDocument) -> None:
    """modality, task, input kind and classes must describe the same kind of pack."""
    file = doc.file
    task, modality = manifest.task, manifest.modality
    if _TASK_MODALITY[task] is not modality:
        problem = (
            f"task '{task.value}' needs modality '{_TASK_MODALITY[task].value}', "
            f"not '{modality.value}'"
        )
        raise SpecError(file, "task", problem, doc.line_of("task"))
    kind = _MODALITY_INPUT_KIND[modality]
    if manifest.input.kind != kind:
        problem = f"'{manifest.input.kind}' does not fit modality '{modality.value}' (use kind: {kind})"
        raise SpecError(file, "input.kind", problem, doc.line_of("input", "kind"))
    if task in _TASK_NEEDS_CLASSES and not manifest.classes:
        problem = f"task '{task.value}' needs the list of its classes"
        raise SpecError(file, "classes", problem, doc.line_of("classes"))
    seen: set[str] = set()
    for i, name in enumerate(manifest.classes):
        if name in seen:
            line = doc.line_of("classes", i)
            raise SpecError(file, f"classes[{i}]", f"duplicate class '{name}'", line)
        seen.add(name)


def _validate_manifest(manifest: PackManifest, doc: YamlDocument) -> None:
    file = doc.file
    _validate_task(manifest, doc)
    known = set(scorer_names())
    for i, scorer in enumerate(manifest.scorers):
        if scorer not in known:
            line = doc.line_of("scorers", i)
            raise SpecError(file, f"scorers[{i}]", unknown_scorer_message(scorer), line)
    for rel, digest in manifest.files.items():
        line = doc.line_of("files", rel)
        _check_relative(file, f"files.{rel}", rel, line)
        if not _is_sha256(digest):
            raise SpecError(file, f"files.{rel}", f"'{digest}' is not a sha256 hex digest", line)
    for split, spec in manifest.splits.items():
        field = f"splits.{split}.samples"
        line = doc.line_of("splits", split, "samples")
        _check_relative(file, field, spec.samples, line)
        if spec.samples not in manifest.files:
            raise PackIntegrityError(
                f"{file}: {field}: '{spec.samples}' is not listed in files; rebuild the pack"
            )


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _verify_files(file: str, root: Path, manifest: PackManifest) -> None:
    for rel, expected in manifest.files.items():
        path = root / rel
        if not path.is_file():
            raise PackIntegrityError(
                f"{file}: files.{rel}: listed in the manifest but missing; "
                "rebuild the pack or restore the file"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise PackIntegrityError(
                f"{file}: files.{rel}: sha256 mismatch (manifest {expected[:6]}..., "
                f"file {actual[:6]}...); rebuild the pack or restore the file"
            )


class _RecordError(Exception):
    """A record that parsed but does not fit the pack: field and problem, for a SpecError."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def _detection_sample(
    record: DetectionRecord, split: str, root: Path, manifest: PackManifest, shown: str, lineno: int
) -> Sample:
    file = str(root / MANIFEST_NAME)
    _check_relative(shown, "image", record.image, lineno)
    if record.image not in manifest.files:
        raise PackIntegrityError(
            f"{shown}:{lineno}: image: '{record.image}' is not listed in "
            f"{file} files; rebuild the pack"
        )
    boxes = np.asarray(record.boxes, dtype=np.float32).reshape(-1, 4)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        if not (x2 > x1 and y2 > y1):
            raise _RecordError(f"boxes[{i}]", f"box {[x1, y1, x2, y2]} needs x2 > x1 and y2 > y1")
    boxes.setflags(write=False)
    return Sample(
        id=record.id,
        split=split,
        image_path=(root / record.image).resolve(),
        target={"boxes": boxes},
        sha256=manifest.files[record.image],
    )


def _text_sample(record: IntentRecord | TextRecord, split: str, manifest: PackManifest) -> Sample:
    limit = manifest.input.max_chars if isinstance(manifest.input, TextInputSpec) else None
    if limit is not None and len(record.text) > limit:
        raise _RecordError("text", f"{len(record.text)} characters, more than input.max_chars ({limit})")
    target: dict[str, Any] = {}
    if isinstance(record, IntentRecord):
        if record.label not in manifest.classes:
            known = ", ".join(manifest.classes)
            raise _RecordError("label", f"'{record.label}' is not one of the manifest's classes ({known})")
        target = {"label": record.label}
    return Sample(
        id=record.id,
        split=split,
        image_path=None,
        target=target,
        sha256=hashlib.sha256(record.text.encode("utf-8")).hexdigest(),
        text=record.text,
    )


_RECORDS: dict[Task, type[_Strict]] = {
    Task.DETECTION: DetectionRecord,
    Task.INTENT_CLASSIFICATION: IntentRecord,
    Task.LANGUAGE_MODELING: TextRecord,
}


def _load_split(
    manifest_path: Path, root: Path, manifest: PackManifest, split: str, doc: YamlDocument
) -> list[Sample]:
    spec = manifest.splits[split]
    samples_path = root / spec.samples
    shown = str(manifest_path.parent / spec.samples)  # the path as the user gave it, for messages
    record_model = _RECORDS[manifest.task]
    make: Callable[[Any, int], Sample]
    if manifest.task is Task.DETECTION:
        make = lambda record, lineno: _detection_sample(record, split, root, manifest, shown, lineno)  # noqa: E731
    else:
        make = lambda record, lineno: _text_sample(record, split, manifest)  # noqa: E731
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    lines = samples_path.read_text(encoding="utf-8").splitlines()
    for lineno, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            record: Any = record_model.model_validate(data)
        except json.JSONDecodeError as exc:
            raise SpecError(shown, None, f"invalid JSON: {exc.msg}", lineno) from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            problem = _WORDING.problem(err, list(loc), record_model)
            raise SpecError(shown, render_field_path(loc), problem, lineno) from exc
        if record.id in seen:
            raise SpecError(
                shown, "id", f"duplicate id '{record.id}' (first on line {seen[record.id]})", lineno
            )
        seen[record.id] = lineno
        try:
            samples.append(make(record, lineno))
        except _RecordError as exc:
            raise SpecError(shown, exc.field, exc.problem, lineno) from None
    if len(samples) != spec.count:
        raise SpecError(
            doc.file,
            f"splits.{split}.count",
            f"says {spec.count} samples but '{spec.samples}' has {len(samples)}",
            doc.line_of("splits", split, "count"),
        )
    return samples


def load_promptpack(path: str | Path, *, verify: bool = True) -> PromptPack:
    """Load the pack at ``path`` (its directory or its manifest.yaml).

    With ``verify`` every file listed in the manifest is hashed and compared;
    without it only the manifest and the samples files are read.
    """
    path = Path(path)
    if path.is_dir():
        manifest_path = path / MANIFEST_NAME
    elif path.name == MANIFEST_NAME or path.suffix in {".yaml", ".yml"}:
        manifest_path = path
    else:
        raise SpecError(str(path), None, f"not a pack directory or its {MANIFEST_NAME}")
    if not manifest_path.is_file():
        problem = "manifest not found; is this a PromptPack directory?"
        raise SpecError(str(manifest_path), None, problem)
    file = str(manifest_path)
    root = manifest_path.parent.resolve()

    manifest, raw, doc = _read_manifest(manifest_path)
    _validate_manifest(manifest, doc)
    for split, spec in manifest.splits.items():
        if not (root / spec.samples).is_file():
            line = doc.line_of("splits", split, "samples")
            problem = f"file '{spec.samples}' not found"
            raise SpecError(file, f"splits.{split}.samples", problem, line)
    if verify:
        _verify_files(file, root, manifest)
    samples = {
        split: _load_split(manifest_path, root, manifest, split, doc) for split in manifest.splits
    }
    digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    logger.debug("loaded pack %s %s (%s)", manifest.name, manifest.version, digest)
    return PromptPack(root, manifest_path, manifest, digest, samples)
