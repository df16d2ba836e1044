"""One JSONL record schema per PromptPack task, and the Sample each record becomes.

* ``detection`` (vision): ``{"id", "image", "boxes"}``; the face packs (one class).
* ``object-detection`` (vision): ``{"id", "image", "boxes", "labels"}``, boxes
  ``[x1, y1, x2, y2]`` in image pixels and one class name per box.
* ``image-classification`` (vision): ``{"id", "image", "label"}``, label a class or null.
* ``intent-classification`` (text): ``{"id", "text", "label"}``, label one of ``classes``.
* ``text-classification`` (text): ``{"id", "text", "label"}``, label a class or null.
* ``language-modeling`` (text): ``{"id", "text"}``.

An image sample's ``sha256`` is its file's (from the manifest); a text sample's is the
hash of its UTF-8 text.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from edgegate.errors import PackIntegrityError
from edgegate.packs.manifest import (
    MANIFEST_NAME,
    PackManifest,
    StrictModel,
    Task,
    TextInputSpec,
    check_relative,
)
from edgegate.packs.sample import Sample

Box = tuple[float, float, float, float]


class DetectionRecord(StrictModel):
    """One line of a detection split's JSONL file."""

    id: str = Field(min_length=1)
    image: str
    boxes: list[Box]
    source: list[str] = Field(default_factory=list)
    background: str | None = None


class ObjectDetectionRecord(StrictModel):
    """One image of an object-detection split: its boxes and each box's class name."""

    id: str = Field(min_length=1)
    image: str
    boxes: list[Box]
    labels: list[str]


class ImageClassificationRecord(StrictModel):
    """One image and its class; null when the image is not labelled (agreement only)."""

    id: str = Field(min_length=1)
    image: str
    label: str | None = Field(default=None, min_length=1)


class IntentRecord(StrictModel):
    """One line of an intent-classification split: an utterance and its intent."""

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    label: str = Field(min_length=1)


class TextClassificationRecord(StrictModel):
    """One text and its class; null when the text is not labelled (agreement only)."""

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    label: str | None = Field(default=None, min_length=1)


class TextRecord(StrictModel):
    """One line of a language-modeling split: a passage."""

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)


RECORDS: dict[Task, type[StrictModel]] = {
    Task.DETECTION: DetectionRecord,
    Task.INTENT_CLASSIFICATION: IntentRecord,
    Task.LANGUAGE_MODELING: TextRecord,
    Task.IMAGE_CLASSIFICATION: ImageClassificationRecord,
    Task.OBJECT_DETECTION: ObjectDetectionRecord,
    Task.TEXT_CLASSIFICATION: TextClassificationRecord,
}


class RecordError(Exception):
    """A record that parsed but does not fit the pack: field and problem, for a SpecError."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


class RecordContext:
    """What turning one split's records into Samples needs to know about the pack."""

    def __init__(self, root: Path, manifest: PackManifest, split: str, shown: str) -> None:
        self.root = root
        self.manifest = manifest
        self.split = split
        self.shown = shown  # the samples file as the user named it, for messages

    def sample(self, record: Any, lineno: int) -> Sample:
        """The Sample of one validated record (its line number for messages)."""
        if isinstance(record, (DetectionRecord, ObjectDetectionRecord, ImageClassificationRecord)):
            return self._image_sample(record, lineno)
        return self._text_sample(record)

    def _check_label(self, field: str, label: str) -> None:
        classes = self.manifest.classes
        if label not in classes:
            known = ", ".join(classes) if classes else "the manifest lists none"
            raise RecordError(field, f"'{label}' is not one of the manifest's classes ({known})")

    def _image_sample(
        self, record: DetectionRecord | ObjectDetectionRecord | ImageClassificationRecord, lineno: int
    ) -> Sample:
        check_relative(self.shown, "image", record.image, lineno)
        if record.image not in self.manifest.files:
            raise PackIntegrityError(
                f"{self.shown}:{lineno}: image: '{record.image}' is not listed in "
                f"{self.root / MANIFEST_NAME} files; rebuild the pack"
            )
        target: dict[str, Any]
        if isinstance(record, ImageClassificationRecord):
            target = {}
            if record.label is not None:
                self._check_label("label", record.label)
                target = {"label": record.label}
        else:
            target = {"boxes": boxes_array(record.boxes)}
        if isinstance(record, ObjectDetectionRecord):
            if len(record.labels) != len(record.boxes):
                raise RecordError(
                    "labels", f"{len(record.labels)} labels for {len(record.boxes)} boxes (one label per box)"
                )
            for i, label in enumerate(record.labels):
                self._check_label(f"labels[{i}]", label)
            target["labels"] = list(record.labels)
        return Sample(
            id=record.id,
            split=self.split,
            image_path=(self.root / record.image).resolve(),
            target=target,
            sha256=self.manifest.files[record.image],
        )

    def _text_sample(self, record: IntentRecord | TextClassificationRecord | TextRecord) -> Sample:
        spec = self.manifest.input
        limit = spec.max_chars if isinstance(spec, TextInputSpec) else None
        if limit is not None and len(record.text) > limit:
            raise RecordError("text", f"{len(record.text)} characters, more than input.max_chars ({limit})")
        target: dict[str, Any] = {}
        if isinstance(record, (IntentRecord, TextClassificationRecord)) and record.label is not None:
            self._check_label("label", record.label)
            target = {"label": record.label}
        return Sample(
            id=record.id,
            split=self.split,
            image_path=None,
            target=target,
            sha256=hashlib.sha256(record.text.encode("utf-8")).hexdigest(),
            text=record.text,
        )


def boxes_array(boxes: list[Box]) -> np.ndarray:
    """(N, 4) float32 read-only xyxy boxes; each must have x2 > x1 and y2 > y1."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    for i, (x1, y1, x2, y2) in enumerate(out.tolist()):
        if not (x2 > x1 and y2 > y1):
            raise RecordError(f"boxes[{i}]", f"box {[x1, y1, x2, y2]} needs x2 > x1 and y2 > y1")
    out.setflags(write=False)
    return out
