"""What ``edgegate pack verify`` and ``edgegate pack show`` report about a pack.

``verify_pack`` goes further than loading: every listed file is hashed (all mismatches,
not just the first), every image sample is decoded, its size compared with the
manifest's fixed size (when it has one) and its boxes with the image's bounds.
``describe_pack`` is the pack at a glance: what it is, its classes, splits and label
counts, its sources and licences, its digest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgegate.packs.manifest import ImageInputSpec, Task
from edgegate.packs.promptpack import PromptPack, file_problems, load_promptpack
from edgegate.packs.sample import Sample, decode_image

# A box may touch the image's far edge; this much past it is float rounding, not an error.
_EDGE_TOLERANCE_PX = 1e-3


@dataclass(frozen=True)
class PackCheck:
    pack: PromptPack
    problems: list[str]  # one line each; empty when the pack verifies
    files: int  # files hashed
    images: int  # image files decoded


def _image_problems(pack: PromptPack, sample: Sample, pixels_hw: tuple[int, int]) -> list[str]:
    height, width = pixels_hw
    where = f"{sample.image_path}: sample '{sample.id}' of split '{sample.split}'"
    spec = pack.manifest.input
    problems = []
    fixed = isinstance(spec, ImageInputSpec) and spec.height is not None and spec.width is not None
    if fixed and (height, width) != (spec.height, spec.width):
        problems.append(f"{where}: image is {width}x{height}, the manifest's input says "
                            f"{spec.width}x{spec.height}")
    boxes = sample.target.get("boxes")
    if boxes is not None:
        tol = _EDGE_TOLERANCE_PX
        for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
                problems.append(f"{where}: boxes[{i}] {[x1, y1, x2, y2]} lies outside the "
                                f"{width}x{height} image")
    return problems


def verify_pack(path: str | Path) -> PackCheck:
    """Check the pack at ``path`` in full. A manifest or samples file that does not load is
    a SpecError as from ``load_promptpack``; everything after that is collected."""
    pack = load_promptpack(path, verify=False)
    by_file = file_problems(str(pack.manifest_path), pack.root, pack.manifest)
    problems = list(by_file.values())
    bad = {(pack.root / rel).resolve() for rel in by_file}  # reported already; not decoded
    decoded: dict[Path, tuple[int, int] | None] = {}
    for split in pack.splits:
        for sample in pack.samples(split):
            path_ = sample.image_path
            if path_ is None or path_ in bad:
                continue
            if path_ not in decoded:
                try:
                    decoded[path_] = decode_image(path_).shape[:2]
                except Exception as exc:  # noqa: BLE001  PIL raises OSError, SyntaxError, struct.error, ...
                    decoded[path_] = None
                    problems.append(f"{path_}: sample '{sample.id}' of split '{split}': "
                                    f"cannot decode the image ({exc})")
            hw = decoded[path_]
            if hw is not None:
                problems += _image_problems(pack, sample, hw)
    return PackCheck(pack=pack, problems=problems, files=len(pack.manifest.files), images=len(decoded))


def _split_counts(pack: PromptPack, split: str) -> dict[str, Any]:
    samples = pack.samples(split)
    out: dict[str, Any] = {"samples": len(samples)}
    task, classes = pack.task, pack.manifest.classes
    if task is Task.LANGUAGE_MODELING:
        return out
    counts: Counter[str] = Counter()
    empty = 0
    for s in samples:
        if task is Task.OBJECT_DETECTION:
            counts.update(s.target["labels"])
            empty += not s.target["labels"]
        elif task is Task.DETECTION:  # one class: every box is a classes[0]
            counts[classes[0]] += len(s.target["boxes"])
            empty += not len(s.target["boxes"])
        elif "label" in s.target:
            counts[s.target["label"]] += 1
        else:
            empty += 1
    ordered = {c: counts[c] for c in classes if counts[c]}
    if task in (Task.OBJECT_DETECTION, Task.DETECTION):
        out.update(boxes=ordered, images_without_boxes=empty)
    else:
        out.update(labels=ordered, unlabelled=empty)
    return out


def describe_pack(pack: PromptPack) -> dict[str, Any]:
    """The pack at a glance, as JSON-serialisable data (``pack show --format json``)."""
    m = pack.manifest
    return {
        "name": m.name,
        "version": m.version,
        "digest": pack.digest,
        "path": str(pack.root),
        "task": m.task.value,
        "modality": m.modality.value,
        "description": m.description,
        "input": m.input.model_dump(exclude_none=True),
        "scorers": list(m.scorers),
        "classes": list(m.classes),
        "splits": {split: _split_counts(pack, split) for split in pack.splits},
        "sources": [s.model_dump(exclude_none=True) for s in m.sources],
        "build": None if m.build is None else m.build.model_dump(),
        "files": len(m.files),
    }


def _input_line(spec: dict[str, Any]) -> str:
    if spec["kind"] == "text":
        return f"text, language {spec['language']}, {spec.get('encoding', 'utf-8')}"
    size = f"{spec['width']}x{spec['height']}" if "height" in spec and "width" in spec else "any size"
    return f"image {spec['color']} {spec['dtype']}, {size}"


def render_pack(desc: dict[str, Any], max_classes: int = 12) -> str:
    """``describe_pack``'s data as the text ``pack show`` prints."""
    classes = desc["classes"]
    shown = ", ".join(classes[:max_classes]) + (", ..." if len(classes) > max_classes else "")
    splits = desc["splits"]
    lines = [
        f"pack:     {desc['name']} {desc['version']}",
        f"digest:   {desc['digest']}",
        f"path:     {desc['path']}",
        f"task:     {desc['task']} ({desc['modality']}); input: {_input_line(desc['input'])}",
        f"scorers:  {', '.join(desc['scorers'])}",
    ]
    if classes:
        lines.append(f"classes:  {len(classes)} ({shown})")
    elif desc["task"] in (Task.IMAGE_CLASSIFICATION.value, Task.TEXT_CLASSIFICATION.value):
        lines.append("classes:  none (no labels: scored by agreement with FP32 only)")
    lines.append("splits:   " + ", ".join(f"{name} {s['samples']}" for name, s in splits.items()))
    key = next((k for k in ("labels", "boxes") if any(k in s for s in splits.values())), None)
    if key is not None:
        rest = "unlabelled" if key == "labels" else "images_without_boxes"
        names = [c for c in classes if any(c in s[key] for s in splits.values())]
        rows = [(c, [s[key].get(c, 0) for s in splits.values()]) for c in names]
        if any(s[rest] for s in splits.values()):
            rows.append(("(unlabelled)" if key == "labels" else "(no box)", [s[rest] for s in splits.values()]))
        width = max([len(r[0]) for r in rows] + [len(key) + 1])
        cols = [max(len(name), 5) for name in splits]
        lines.append(f"{key}:".ljust(width + 2) + "  ".join(n.rjust(w) for n, w in zip(splits, cols)))
        for name, counts in rows:
            lines.append(f"  {name.ljust(width)}" + "  ".join(str(c).rjust(w) for c, w in zip(counts, cols)))
    lines.append("sources:" + ("" if desc["sources"] else " none listed"))
    for s in desc["sources"]:
        pkg = f", package {s['package']}" if s.get("package") else ""
        lines.append(f"  {s['name']} ({s['role']}{pkg})")
        lines.append(f"    licence: {s['license']}")
        if s.get("attribution"):
            lines.append(f"    attribution: {s['attribution']}")
    build = desc["build"]
    if build is not None:
        lines.append(f"build:    {build['script']}, seed {build['seed']}")
    lines.append(f"files:    {desc['files']} listed with their sha256 (edgegate pack verify checks them)")
    return "\n".join(lines)
