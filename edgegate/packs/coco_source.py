"""Read a COCO detection annotation file (``instances_*.json``) and its images.

COCO boxes are ``[x, y, width, height]`` in pixels; a pack stores ``[x1, y1, x2, y2]``
and the category's name per box, with ``classes`` in category-id order. Every problem is
one line naming the file and the image or annotation id: an image missing from the
images folder or not decodable, a size that differs from the one the file declares, a
box outside its image, an unknown category or image id.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from edgegate.errors import SpecError
from edgegate.packs.records import Box
from edgegate.packs.sources import SourceData, SourceItem, SourceKind, read_image
from edgegate.safe_load import JSON_LIMITS, loads_json, read_bounded

# Exported boxes carry float rounding (x + w = 640.0000001); this much is not "outside".
EDGE_TOLERANCE_PX = 1e-3


def _int_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _entries(doc: dict[str, Any], key: str, path: Path, problems: list[str]) -> list[dict[str, Any]]:
    value = doc.get(key)
    if not isinstance(value, list):
        problems.append(f"{path}: '{key}' must be a list (a COCO detection file has images, "
                        "annotations and categories)")
        return []
    good = [v for v in value if isinstance(v, dict)]
    if len(good) != len(value):
        problems.append(f"{path}: {key}: {len(value) - len(good)} entries are not JSON objects")
    return good


def _categories(doc: dict[str, Any], path: Path, problems: list[str]) -> dict[int, str]:
    names: dict[int, str] = {}
    for cat in _entries(doc, "categories", path, problems):
        cid, name = _int_id(cat.get("id")), cat.get("name")
        if cid is None or not isinstance(name, str) or not name.strip():
            problems.append(f"{path}: category {cat.get('id')!r}: needs an integer id and a non-empty name")
        elif cid in names:
            problems.append(f"{path}: category {cid}: duplicate category id")
        elif name in names.values():
            problems.append(f"{path}: category {cid}: duplicate category name '{name}'")
        else:
            names[cid] = name
    if not names and not problems:
        problems.append(f"{path}: no categories; a detection pack needs its class names")
    return dict(sorted(names.items()))


def _box(ann: dict[str, Any]) -> tuple[float, float, float, float] | None:
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return None
    return float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])


def read_coco(path: Path, images_dir: Path) -> SourceData:
    """The images a COCO detection file lists (every one, with or without boxes), their
    boxes and category names. Crowd annotations (``iscrowd: 1``) are skipped: they mark
    regions COCO's own evaluation ignores, not objects a detector should find."""
    data = SourceData(SourceKind.COCO)
    problems = data.problems
    try:
        raw = read_bounded(path, str(path), JSON_LIMITS)
        doc = loads_json(raw.decode("utf-8-sig"), str(path))  # bounded depth: no RecursionError
    except OSError as exc:
        problems.append(f"{path}: cannot read the file ({exc.strerror})")
        return data
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not a JSON file ({exc})")
        return data
    except SpecError as exc:
        problems.append(exc.message)
        return data
    if not isinstance(doc, dict):
        problems.append(f"{path}: not a COCO detection file (the top level is not an object)")
        return data
    data.annotation_sha256 = hashlib.sha256(raw).hexdigest()
    categories = _categories(doc, path, problems)
    data.classes = list(categories.values())

    images: dict[int, dict[str, Any]] = {}
    sizes: dict[int, tuple[int, int]] = {}
    seen_files: dict[str, int] = {}
    for img in _entries(doc, "images", path, problems):
        iid, name = _int_id(img.get("id")), img.get("file_name")
        if iid is None or not isinstance(name, str) or not name:
            problems.append(f"{path}: image {img.get('id')!r}: needs an integer id and a file_name")
            continue
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or "\\" in name:
            problems.append(f"{path}: image {iid}: file_name '{name}' must be a path inside --images")
            continue
        if iid in images:
            problems.append(f"{path}: image {iid}: duplicate image id")
            continue
        if name in seen_files:
            problems.append(f"{path}: image {iid}: file_name '{name}' is also image {seen_files[name]}")
            continue
        seen_files[name] = iid
        images[iid] = img
        facts = read_image(images_dir / name)
        if isinstance(facts, str):
            if not (images_dir / name).is_file():
                facts = f"not found in {images_dir}; give the images folder with --images"
            problems.append(f"{images_dir / name}: image {iid}: {facts}")
            continue
        declared = (img.get("width"), img.get("height"))
        if declared != (None, None) and declared != facts.size:
            problems.append(f"{images_dir / name}: image {iid}: the file is {facts.size[0]}x{facts.size[1]} "
                            f"but {path.name} says {declared[0]}x{declared[1]}")
            continue
        sizes[iid] = facts.size
        data.items.append(SourceItem(
            id=name, shown=str(images_dir / name), sha256=facts.sha256, file=images_dir / name,
            pack_path=f"images/{name}", size=facts.size,
        ))
    if not images and not problems:
        problems.append(f"{path}: no images")

    boxes: dict[int, list[tuple[Box, str]]] = {}
    crowd = 0
    for ann in _entries(doc, "annotations", path, problems):
        aid, iid, cid = _int_id(ann.get("id")), _int_id(ann.get("image_id")), _int_id(ann.get("category_id"))
        where = f"{path}: annotation {ann.get('id')!r}"
        if iid is None or iid not in images:
            problems.append(f"{where}: image_id {ann.get('image_id')!r} is not an image of the file")
            continue
        where += f" (image {iid} '{images[iid]['file_name']}')"
        if aid is None:
            problems.append(f"{where}: needs an integer id")
            continue
        if ann.get("iscrowd", 0) == 1:
            crowd += 1
            continue
        if cid is None or cid not in categories:
            problems.append(f"{where}: unknown category_id {ann.get('category_id')!r} "
                            f"(categories: {', '.join(map(str, categories))})")
            continue
        xywh = _box(ann)
        if xywh is None:
            problems.append(f"{where}: bbox must be [x, y, width, height], got {ann.get('bbox')!r}")
            continue
        if iid not in sizes:
            continue  # the image itself is refused above
        x, y, w, h = xywh
        width, height = sizes[iid]
        tol = EDGE_TOLERANCE_PX
        if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
            problems.append(f"{where}: bbox {list(xywh)} lies outside the {width}x{height} image")
            continue
        # xyxy clipped to the image (within the tolerance) and rounded to 1e-4 px, so the
        # samples file does not carry float noise such as 0.30000000000000004
        box = (round(max(x, 0.0), 4), round(max(y, 0.0), 4),
               round(min(x + w, width), 4), round(min(y + h, height), 4))
        if box[2] <= box[0] or box[3] <= box[1]:
            problems.append(f"{where}: bbox {list(xywh)} has no area")
            continue
        boxes.setdefault(iid, []).append((box, categories[cid]))
    if crowd:
        data.notes.append(f"skipped {crowd} crowd annotation(s) (iscrowd: 1), as COCO's evaluation does")

    by_name = {img["file_name"]: iid for iid, img in images.items()}
    for i, item in enumerate(data.items):
        found = boxes.get(by_name[item.id], [])
        data.items[i] = replace(item, boxes=tuple(b for b, _ in found), labels=tuple(c for _, c in found))
    return data
