"""Read the data a user has into PromptPack samples: an image folder, a CSV/JSONL of texts.

Readers only read: they hash every sample, decode every image in full (a truncated file
is a problem here, not in a run) and collect every problem as one line naming the file,
so ``edgegate pack create`` can refuse with all of them at once and write nothing. The
COCO reader is in :mod:`edgegate.packs.coco_source`; the pack itself is written by
:mod:`edgegate.packs.create`.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from edgegate.errors import SpecError
from edgegate.packs.manifest import Task
from edgegate.packs.records import Box
from edgegate.packs.sample import decode_image
from edgegate.safe_load import SAMPLES_LIMITS, loads_json

# What PIL decodes and people keep photos in; anything else in a folder is skipped.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


class SourceKind(str, Enum):
    IMAGE_TREE = "image-folder-tree"  # one subfolder per class (loose images: unlabelled)
    IMAGE_FOLDER = "image-folder"  # images only, no labels
    COCO = "coco-json"
    CSV = "csv"
    JSONL = "jsonl"


SOURCE_TASK = {
    SourceKind.IMAGE_TREE: Task.IMAGE_CLASSIFICATION,
    SourceKind.IMAGE_FOLDER: Task.IMAGE_CLASSIFICATION,
    SourceKind.COCO: Task.OBJECT_DETECTION,
    SourceKind.CSV: Task.TEXT_CLASSIFICATION,
    SourceKind.JSONL: Task.TEXT_CLASSIFICATION,
}


@dataclass(frozen=True)
class SourceItem:
    """One sample as read from the user's data, before it is written into a pack."""

    id: str
    shown: str  # where it came from, as messages name it (a file, or file:line)
    sha256: str  # of the image file's bytes, or of the UTF-8 text
    file: Path | None = None  # the image file to copy or link
    pack_path: str | None = None  # its POSIX path inside the pack
    size: tuple[int, int] | None = None  # decoded image (width, height)
    label: str | None = None  # classification; None: not labelled
    boxes: tuple[Box, ...] = ()  # object detection, xyxy pixels
    labels: tuple[str, ...] = ()  # object detection, one class name per box
    text: str | None = None


@dataclass
class SourceData:
    """What a reader found: the samples, and every problem and note about the source."""

    kind: SourceKind
    items: list[SourceItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line each; any refuses the pack
    notes: list[str] = field(default_factory=list)  # things skipped on purpose
    classes: list[str] | None = None  # fixed by the source (COCO categories); else from labels
    annotation_sha256: str | None = None  # the COCO JSON / table the samples came from

    @property
    def task(self) -> Task:
        return SOURCE_TASK[self.kind]


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    size: tuple[int, int]  # (width, height)


def read_image(path: Path) -> ImageFacts | str:
    """The sha256 and size of an image file, decoded in full from the bytes that were
    hashed; a problem (without the file name) when it cannot be read or decoded."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read the file ({exc.strerror})"
    try:
        pixels = decode_image(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001  PIL's plugins raise OSError, SyntaxError, struct.error, ...
        return f"cannot decode the image ({exc}); remove or replace the file"
    height, width = pixels.shape[:2]
    return ImageFacts(hashlib.sha256(data).hexdigest(), (width, height))


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _visible(path: Path) -> list[Path]:
    # Hidden entries (.DS_Store, .git) are never samples; names sort the same everywhere.
    return sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def read_image_folder(root: Path, shown_root: str) -> SourceData:
    """A folder of images: each subfolder is a class (its name the label), images directly
    in the folder are unlabelled. Subfolders of class folders are refused: which label
    would their images have?"""
    loose = [p for p in _visible(root) if p.is_file()]
    class_dirs = [p for p in _visible(root) if p.is_dir()]
    data = SourceData(SourceKind.IMAGE_TREE if class_dirs else SourceKind.IMAGE_FOLDER)
    skipped: list[str] = []
    entries: list[tuple[Path, str, str | None]] = []  # file, id (path in the folder), label
    for path in loose:
        if is_image_file(path):
            entries.append((path, path.name, None))
        else:
            skipped.append(path.name)
    for folder in class_dirs:
        images = 0
        for path in _visible(folder):
            rel = f"{folder.name}/{path.name}"
            if path.is_dir():
                data.problems.append(
                    f"{shown_root}/{rel}: a folder inside class folder '{folder.name}'; "
                    "put a class's images directly in its folder (one level of class folders)"
                )
            elif is_image_file(path):
                entries.append((path, rel, folder.name))
                images += 1
            else:
                skipped.append(rel)
        if images == 0:
            data.problems.append(
                f"{shown_root}/{folder.name}: class folder has no images; add images or remove the folder"
            )
    if skipped:
        data.notes.append(
            f"skipped {len(skipped)} file(s) that are not images by their extension: "
            + ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        )
    if not entries and not data.problems:
        data.problems.append(
            f"{shown_root}: no images found (extensions: {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    for path, rel, label in entries:
        shown = f"{shown_root}/{rel}"
        facts = read_image(path)
        if isinstance(facts, str):
            data.problems.append(f"{shown}: {facts}")
            continue
        data.items.append(SourceItem(
            id=rel, shown=shown, sha256=facts.sha256, file=path, pack_path=f"images/{rel}",
            size=facts.size, label=label,
        ))
    return data


@dataclass(frozen=True)
class TextColumns:
    text: str = "text"
    label: str = "label"
    label_given: bool = False  # the user named the label column: it must exist
    id: str | None = None  # None: ids are row-00001, ... in file order


def read_text_table(path: Path, columns: TextColumns) -> SourceData:
    """A CSV/TSV (header row) or JSONL file with one text per row and, optionally, its label.
    A missing or empty label is an unlabelled sample; a label column that exists nowhere
    (and was not named by the user) makes an unlabelled pack."""
    suffix = path.suffix.lower()
    data = SourceData(SourceKind.JSONL if suffix in JSONL_SUFFIXES else SourceKind.CSV)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        data.problems.append(f"{path}: cannot read the file ({exc.strerror})")
        return data
    except UnicodeDecodeError as exc:
        data.problems.append(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8")
        return data
    data.annotation_sha256 = hashlib.sha256(raw).hexdigest()
    if data.kind is SourceKind.JSONL:
        rows = _jsonl_rows(path, text, data.problems)
    else:
        rows = _csv_rows(path, text, TABLE_SUFFIXES.get(suffix, ","), columns, data.problems)
    if rows and not any(columns.label in row for _, row in rows) and columns.label_given:
        data.problems.append(f"{path}: no row has a '{columns.label}' field; check --label-column")
    seen_ids: dict[str, str] = {}
    for n, (where, row) in enumerate(rows, start=1):
        item = _text_item(path, where, n, row, columns, data.problems)
        if item is None:
            continue
        if item.id in seen_ids:
            data.problems.append(f"{item.shown}: duplicate id '{item.id}' (first at {seen_ids[item.id]})")
            continue
        seen_ids[item.id] = item.shown
        data.items.append(item)
    if not rows and not data.problems:
        data.problems.append(f"{path}: no rows")
    return data


Row = dict[str, object]


def _jsonl_rows(path: Path, text: str, problems: list[str]) -> list[tuple[int, Row]]:
    rows: list[tuple[int, Row]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = loads_json(line, str(path), SAMPLES_LIMITS, line=lineno)  # bounded depth and size
        except SpecError as exc:
            problems.append(exc.message)
            continue
        if not isinstance(value, dict):
            problems.append(f"{path}:{lineno}: a line must be a JSON object, got {type(value).__name__}")
            continue
        rows.append((lineno, value))
    return rows


def _csv_rows(
    path: Path, text: str, delimiter: str, columns: TextColumns, problems: list[str]
) -> list[tuple[int, Row]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = reader.fieldnames or []
    wanted = [("--text-column", columns.text)]
    if columns.label_given:
        wanted.append(("--label-column", columns.label))
    if columns.id is not None:
        wanted.append(("--id-column", columns.id))
    missing = [(option, name) for option, name in wanted if name not in header]
    for option, name in missing:
        problems.append(f"{path}: no column '{name}' (columns: {', '.join(header) or 'none'}); pass {option}")
    if missing:
        return []
    rows: list[tuple[int, Row]] = []
    try:
        for row in reader:
            if None in row:  # more cells than the header has names
                problems.append(f"{path}:{reader.line_num}: {len(header) + len(row[None])} cells, "
                                f"the header names {len(header)}")
                continue
            rows.append((reader.line_num, {k: v for k, v in row.items() if v is not None}))
    except csv.Error as exc:
        problems.append(f"{path}:{reader.line_num}: {exc}")
    return rows


def _text_item(
    path: Path, lineno: int, n: int, row: Row, columns: TextColumns, problems: list[str]
) -> SourceItem | None:
    shown = f"{path}:{lineno}"
    text = row.get(columns.text)
    if not isinstance(text, str) or not text.strip():
        got = "missing" if text is None else "empty" if isinstance(text, str) else type(text).__name__
        problems.append(f"{shown}: {columns.text}: needs a non-empty text, got {got}")
        return None
    label = row.get(columns.label)
    if isinstance(label, bool) or not isinstance(label, (str, int, type(None))):
        problems.append(f"{shown}: {columns.label}: a label is a string or an integer, got {label!r}")
        return None
    label_text = str(label).strip() if label is not None else ""
    if columns.id is not None:
        raw_id = row.get(columns.id)
        if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id).strip():
            problems.append(f"{shown}: {columns.id}: needs a non-empty id, got {raw_id!r}")
            return None
        sample_id = str(raw_id).strip()
    else:
        sample_id = f"row-{n:05d}"
    return SourceItem(
        id=sample_id, shown=shown, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        label=label_text or None, text=text,
    )
