"""Build a PromptPack from the data a user has (``edgegate pack create``).

``create_pack`` turns a folder of images (one subfolder per class, or none), a COCO
detection file, or a CSV/JSONL of texts into a pack: the samples' files copied (or
linked), one JSONL file per split, and ``manifest.yaml`` with every file's sha256.

The same inputs and options give the same bytes: splits come from a seeded hash of each
sample's content (not from file order or a random generator's stream), files and lines
are written in a fixed order, and the manifest records no paths or versions of the
machine that built it, so the pack's digest is a function of the data and the options.
A pack is built in a temporary folder next to ``--out`` and renamed into place at the
end: a refusal (an unreadable or duplicate sample, too few samples) writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgegate.errors import InputError
from edgegate.packs.coco_source import read_coco
from edgegate.packs.manifest import MANIFEST_NAME, TASK_MODALITY, Task
from edgegate.packs.pack_files import manifest_text, write_pack_files
from edgegate.packs.promptpack import load_promptpack
from edgegate.packs.sources import (
    JSONL_SUFFIXES,
    SOURCE_TASK,
    TABLE_SUFFIXES,
    SourceData,
    SourceItem,
    SourceKind,
    TextColumns,
    read_image_folder,
    read_text_table,
)
from edgegate.packs.splits import SplitPlan, plan_splits

logger = logging.getLogger(__name__)

CREATE_TASKS = (Task.IMAGE_CLASSIFICATION, Task.OBJECT_DETECTION, Task.TEXT_CLASSIFICATION)


class PackSourceError(InputError):
    """The source cannot become a pack; ``problems`` holds one line per problem (the CLI
    prints each as its own ``error:`` line), the message the first of them."""

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = problems


@dataclass(frozen=True)
class PackCreateOptions:
    source: Path
    out: Path
    task: Task | None = None  # None: from the source (folder, COCO .json, .csv/.tsv/.jsonl)
    images: Path | None = None  # COCO only; default: the JSON file's folder
    text_column: str | None = None  # text tables only; default "text"
    label_column: str | None = None  # text tables only; default "label" (optional there)
    id_column: str | None = None  # text tables only; default row-00001, ...
    classes: list[str] | None = None  # class names in the model's output order
    calibration: int = 16
    eval: int | None = None  # None: every sample not in another split
    support: int = 0  # labelled support split (nearest-centroid scoring of embeddings)
    seed: int = 0
    name: str | None = None  # default: the --out folder's name
    version: str = "1.0.0"
    description: str | None = None
    license: str = "unspecified"
    source_name: str | None = None  # default: the source's file or folder name
    attribution: str = ""
    language: str = "und"  # BCP 47 of text samples; "und": not determined
    link: bool = False  # symlink image files instead of copying them
    force: bool = False  # replace an existing pack at --out


@dataclass(frozen=True)
class CreatedPack:
    path: Path
    name: str
    version: str
    task: Task
    digest: str
    classes: list[str]
    splits: dict[str, int]
    labelled: int  # samples (classification) or boxes (detection) with a label
    notes: list[str] = field(default_factory=list)


def read_class_names(path: Path) -> list[str]:
    """Class names from a text file, one per line in the model's output order (blank
    lines skipped), e.g. the 1000 ImageNet class names for an ImageNet classifier."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"--classes-file {path}: cannot read it ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"--classes-file {path}: not UTF-8 text") from exc
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"--classes-file {path}: no class names in it")
    return names


def infer_kind(source: Path) -> SourceKind:
    """What SOURCE is, from what it is on disk: a folder, a .json, a .csv/.tsv/.jsonl."""
    if source.is_dir():
        return SourceKind.IMAGE_TREE  # tree or flat: read_image_folder tells
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    suffix = source.suffix.lower()
    if suffix == ".json":
        return SourceKind.COCO
    if suffix in JSONL_SUFFIXES:
        return SourceKind.JSONL
    if suffix in TABLE_SUFFIXES:
        return SourceKind.CSV
    raise InputError(
        f"{source}: not a source pack create reads: give an image folder, a COCO detection .json, "
        "or a .csv/.tsv/.jsonl of texts"
    )


def _check_options(opts: PackCreateOptions, kind: SourceKind) -> None:
    """Options that cannot work together, said before anything is read."""
    task = SOURCE_TASK[kind]
    if opts.task is not None and opts.task is not task:
        what = {SourceKind.IMAGE_TREE: "an image folder", SourceKind.COCO: "a COCO detection JSON"}
        raise InputError(
            f"--task {opts.task.value}: {opts.source} is {what.get(kind, 'a table of texts')}, "
            f"which makes a {task.value} pack"
        )
    text_options = {"--text-column": opts.text_column, "--label-column": opts.label_column,
                    "--id-column": opts.id_column}
    for option, value in text_options.items():
        if value is not None and task is not Task.TEXT_CLASSIFICATION:
            raise InputError(f"{option}: only for a CSV/JSONL of texts, not for {opts.source}")
    if opts.images is not None and kind is not SourceKind.COCO:
        raise InputError(f"--images: only for a COCO detection JSON, not for {opts.source}")
    if opts.link and task is Task.TEXT_CLASSIFICATION:
        raise InputError("--link: a text pack holds its texts in its samples files; nothing to link")
    if not re.fullmatch(r"\d+\.\d+\.\d+", opts.version):
        raise InputError(f"--version: '{opts.version}' is not MAJOR.MINOR.PATCH (e.g. 1.0.0)")
    if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", opts.language):
        raise InputError(f"--language: '{opts.language}' is not a BCP 47 tag (e.g. en, de, pt-BR)")
    if opts.calibration < 1:
        raise InputError("--calibration: needs at least 1 sample (quantization calibrates on them)")
    if opts.eval is not None and opts.eval < 1:
        raise InputError("--eval: needs at least 1 sample")
    if opts.support < 0:
        raise InputError("--support: must be >= 0")
    if opts.classes is not None:
        names = [c.strip() for c in opts.classes]
        if not names or any(not c for c in names):
            raise InputError("--classes: class names must not be empty")
        dup = sorted({c for c in names if names.count(c) > 1})
        if dup:
            raise InputError(f"--classes: duplicate class name(s): {', '.join(dup)}")


def _check_out(opts: PackCreateOptions) -> None:
    out, source = opts.out.resolve(), opts.source.resolve()
    if out == source or source in out.parents:
        raise InputError(f"--out {opts.out}: inside the source {opts.source}; write the pack elsewhere")
    if out in source.parents:
        raise InputError(f"--out {opts.out}: holds the source {opts.source}; write the pack elsewhere")
    if not opts.out.exists():
        return
    if not opts.force:
        raise InputError(f"--out {opts.out}: already exists; pass --force to replace it")
    if not opts.out.is_dir() or not ((opts.out / MANIFEST_NAME).is_file() or not any(opts.out.iterdir())):
        raise InputError(
            f"--out {opts.out}: exists and is not a PromptPack; refusing to replace it, even with --force"
        )


def _read_source(opts: PackCreateOptions, kind: SourceKind) -> SourceData:
    if kind is SourceKind.IMAGE_TREE:
        return read_image_folder(opts.source, str(opts.source).rstrip("/") or ".")
    if kind is SourceKind.COCO:
        return read_coco(opts.source, opts.images if opts.images is not None else opts.source.parent)
    columns = TextColumns(
        text=opts.text_column or "text", label=opts.label_column or "label",
        label_given=opts.label_column is not None, id=opts.id_column,
    )
    return read_text_table(opts.source, columns)


def _duplicates(items: list[SourceItem]) -> list[str]:
    """One line per sample whose content another sample already has."""
    first: dict[str, SourceItem] = {}
    problems: list[str] = []
    for item in items:
        if item.sha256 in first:
            what = "text" if item.text is not None else "bytes"
            problems.append(f"{item.shown}: same {what} as {first[item.sha256].shown} "
                            f"(sha256 {item.sha256[:12]}...); remove one of them")
        else:
            first[item.sha256] = item
    return problems


def _natural_order(labels: set[str]) -> list[str]:
    # Integer labels (a classifier's class ids) in numeric order, so "10" follows "9".
    if labels and all(re.fullmatch(r"\d+", label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _classes(opts: PackCreateOptions, data: SourceData) -> tuple[list[str], list[str]]:
    """The pack's class list and the problems with it: --classes (the model's output
    order), else the COCO categories, else the labels found (folders sort by name, as
    torchvision's ImageFolder does; integer labels numerically)."""
    labels = {item.label for item in data.items if item.label is not None}
    labels |= {name for item in data.items for name in item.labels}
    if opts.classes is not None:
        classes = [c.strip() for c in opts.classes]
        unknown = sorted(labels - set(classes))
        problems = []
        for item in data.items:
            for label in ([item.label] if item.label is not None else list(item.labels)):
                if label in unknown:
                    problems.append(f"{item.shown}: label '{label}' is not one of --classes")
                    break
        return classes, problems
    if data.classes is not None:
        return data.classes, []
    if data.kind is SourceKind.IMAGE_TREE:
        return sorted(labels), []
    return _natural_order(labels), []


def create_pack(opts: PackCreateOptions) -> CreatedPack:
    """Build the pack ``opts`` describe at ``opts.out``; PackSourceError (every problem)
    or InputError when it cannot, and then nothing is written.

    1. Check the options and where the pack goes.
    2. Read the source: hash every sample, decode every image.
    3. Refuse unreadable and duplicate samples, labels outside the classes.
    4. Split: calibration, support, eval; stratified by label when labelled.
    5. Write the pack into a temporary folder, load it back as a check, rename it to --out.
    """
    # 1. options
    kind = infer_kind(opts.source)
    _check_options(opts, kind)
    _check_out(opts)
    # 2. read
    data = _read_source(opts, kind)
    # 3. refuse
    problems = data.problems + _duplicates(data.items)
    classes, class_problems = _classes(opts, data)
    problems += class_problems
    if problems:
        raise PackSourceError(problems)
    # 4. split
    plan: SplitPlan = plan_splits(
        data.items, calibration=opts.calibration, support=opts.support, eval_=opts.eval, seed=opts.seed,
        shown=str(opts.source),
    )
    used = sum(len(split) for split in plan.splits.values())
    notes = list(data.notes)
    if used < len(data.items):
        asked = f"--calibration {opts.calibration}" + (f" + --support {opts.support}" if opts.support else "")
        notes.append(f"{len(data.items) - used} of {len(data.items)} samples are in no split "
                     f"({asked} + --eval {opts.eval})")
    # 5. write
    return _write(opts, _manifest_head(opts, data, classes, plan), plan, notes)


# The scorers each task is scored with (names in edgegate.packs.scorers' registry).
TASK_SCORERS = {
    Task.IMAGE_CLASSIFICATION: ["classification"],
    Task.OBJECT_DETECTION: ["coco-detection"],
    Task.TEXT_CLASSIFICATION: ["text-classification"],
}
_LOADERS = {
    SourceKind.IMAGE_TREE: "edgegate pack create: image folder, one subfolder per class",
    SourceKind.IMAGE_FOLDER: "edgegate pack create: image folder, unlabelled",
    SourceKind.COCO: "edgegate pack create: COCO detection JSON",
    SourceKind.CSV: "edgegate pack create: CSV of texts",
    SourceKind.JSONL: "edgegate pack create: JSONL of texts",
}


def _input(task: Task, items: list[SourceItem], language: str) -> dict[str, object]:
    if task is Task.TEXT_CLASSIFICATION:
        return {"kind": "text", "language": language, "encoding": "utf-8"}
    spec: dict[str, object] = {"kind": "image", "color": "RGB"}
    sizes = {item.size for item in items}
    size = next(iter(sizes)) if len(sizes) == 1 else None
    if size is not None:  # one size: say it; several: the adapter resizes each image
        spec.update(height=size[1], width=size[0])
    spec["dtype"] = "uint8"
    return spec


def _description(task: Task, data: SourceData, classes: list[str], source_name: str) -> str:
    n = len(data.items)
    what = "texts" if task is Task.TEXT_CLASSIFICATION else "images"
    if task is Task.OBJECT_DETECTION:
        boxes = sum(len(i.boxes) for i in data.items)
        body = f"Object detection, {len(classes)} classes: {n} {what} with {boxes} boxes"
    else:
        labelled = sum(1 for i in data.items if i.label is not None)
        kind = "Image" if task is Task.IMAGE_CLASSIFICATION else "Text"
        if labelled == 0:
            body = f"{kind} classification, unlabelled (scored by agreement with FP32): {n} {what}"
        else:
            some = f", {labelled} labelled" if labelled < n else ""
            body = f"{kind} classification, {len(classes)} classes: {n} {what}{some}"
    return f"{body}, from '{source_name}' (built by edgegate pack create)."


def _manifest_head(
    opts: PackCreateOptions, data: SourceData, classes: list[str], plan: SplitPlan
) -> dict[str, object]:
    """Every manifest field but splits and files, which come from writing the pack."""
    task = data.task
    source_name = opts.source_name or opts.source.resolve().name
    source: dict[str, object] = {
        "name": source_name,
        "role": "text" if task is Task.TEXT_CLASSIFICATION else "images",
        "loader": _LOADERS[data.kind],
        "license": opts.license,
        "attribution": opts.attribution,
    }
    if data.annotation_sha256 is not None:
        source["sha256"] = data.annotation_sha256
    args: dict[str, object] = {"task": task.value, "calibration": opts.calibration, "eval": opts.eval}
    if opts.support:
        args["support"] = opts.support
    args["stratified"] = plan.stratified
    if task is Task.TEXT_CLASSIFICATION:
        args.update(text_column=opts.text_column or "text", label_column=opts.label_column or "label")
        if opts.id_column is not None:
            args["id_column"] = opts.id_column
    return {
        "name": opts.name or opts.out.resolve().name,
        "version": opts.version,
        "modality": TASK_MODALITY[task].value,
        "task": task.value,
        "description": opts.description or _description(task, data, classes, source_name),
        "input": _input(task, data.items, opts.language),
        "splits": {},
        "scorers": TASK_SCORERS[task],
        "classes": classes,
        "sources": [source],
        "build": {"script": "edgegate pack create", "seed": opts.seed, "args": args},
        "files": {},
    }


def _write(opts: PackCreateOptions, head: dict[str, object], plan: SplitPlan, notes: list[str]) -> CreatedPack:
    out = opts.out
    task = Task(head["task"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        files = write_pack_files(tmp, task, plan.splits, link=opts.link)
        splits = {name: {"samples": f"{name}.jsonl", "count": len(items)} for name, items in plan.splits.items()}
        text = manifest_text({**head, "splits": splits, "files": files})
        (tmp / MANIFEST_NAME).write_text(text, encoding="utf-8")
        # The loader's own checks (schema, records, classes, scorers) on what was written.
        pack = load_promptpack(tmp, verify=False)
        if out.exists():
            out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    digest = f"sha256:{hashlib.sha256(text.encode('utf-8')).hexdigest()}"
    logger.info("wrote pack %s %s (%s) to %s", pack.name, pack.version, digest, out)
    items = [i for split in plan.splits.values() for i in split]
    labelled = sum(len(i.labels) if task is Task.OBJECT_DETECTION else i.label is not None for i in items)
    return CreatedPack(
        path=out, name=pack.name, version=pack.version, task=pack.task, digest=digest,
        classes=list(pack.manifest.classes), splits={s: len(pack.samples(s)) for s in pack.splits},
        labelled=labelled, notes=list(notes),
    )
