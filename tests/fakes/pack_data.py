"""Small sources for ``edgegate pack create`` tests: image folders, COCO files, text tables.

Images are PIL-drawn (each seed its own bytes) or crops of a real photo that ships with
matplotlib (Grace Hopper's official portrait, public domain).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw


def make_image(path: Path, seed: int, size: tuple[int, int] = (40, 32), mode: str = "RGB") -> Path:
    """A PNG (or whatever the suffix says) of ``size`` (width, height) drawn from ``seed``:
    a coloured background and a few shapes, so every seed gives different bytes."""
    rng = np.random.default_rng(seed)
    w, h = size
    im = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, w - 4)), int(rng.integers(0, h - 4))
        x1, y1 = int(rng.integers(x0 + 2, w)), int(rng.integers(y0 + 2, h))
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.convert(mode).save(path)
    return path


def image_tree(root: Path, per_class: dict[str, int], size: tuple[int, int] = (40, 32)) -> Path:
    """root/<class>/<class>-<i>.png for each class and count."""
    seed = 0
    for cls, n in per_class.items():
        for i in range(n):
            seed += 1
            make_image(root / cls / f"{cls}-{i}.png", seed, size)
    return root


def truncate(path: Path, keep: int = 60) -> Path:
    """Cut the file after ``keep`` bytes: a PNG that opens but cannot be decoded."""
    path.write_bytes(path.read_bytes()[:keep])
    return path


def real_photo_crops(root: Path, n: int) -> list[Path]:
    """``n`` different JPEG crops of a real photo (matplotlib's grace_hopper.jpg)."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photo = Image.open(f).convert("RGB")
        photo.load()
    w, h = photo.size
    out = []
    for i in range(n):
        box = (i * 17 % (w // 3), i * 29 % (h // 3), w - i * 11 % (w // 3), h - i * 13 % (h // 3))
        path = root / f"hopper-{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo.crop(box).resize((96, 112)).save(path, quality=90)
        out.append(path)
    return out


def coco_set(root: Path, images: list[dict[str, Any]], annotations: list[dict[str, Any]],
             categories: list[dict[str, Any]]) -> Path:
    """root/instances.json and root/images/<file_name> (drawn to each image's size)."""
    for n, img in enumerate(images):
        make_image(root / "images" / img["file_name"], 100 + n, (img["width"], img["height"]))
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def small_coco(root: Path) -> Path:
    """Three images (one without objects), two categories listed out of id order, one
    crowd annotation."""
    images = [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.png", "width": 50, "height": 40},
        {"id": 3, "file_name": "c.png", "width": 64, "height": 48},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 7, "bbox": [4, 5, 20.5, 10], "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 3, "bbox": [30, 20, 34, 28], "iscrowd": 0},
        {"id": 12, "image_id": 2, "category_id": 3, "bbox": [0.1, 0.2, 10, 10]},
        {"id": 13, "image_id": 2, "category_id": 7, "bbox": [0, 0, 50, 40], "iscrowd": 1},
    ]
    categories = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    return coco_set(root, images, annotations, categories)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
