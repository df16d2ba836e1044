"""Build the person_detect PromptPack: real-pixel composites with known face boxes.

Each image is a crop of a people-free photo with 0, 1 or 2 head-and-shoulders
crops of real people pasted on it through a feathered elliptical alpha mask.
Because the face box of each person photo is known, transforming it with the
paste (scale, optional flip, offset) gives exact ground truth.

All pixels come from photos that ship inside scikit-image and matplotlib, so the
pack can be rebuilt offline. The build is deterministic: the same arguments and
the same library versions (recorded in the manifest) give byte-identical files.

    python promptpacks/person_detect/build_pack.py                  # the real pack
    python promptpacks/person_detect/build_pack.py --out tests/fixtures/packs/person_detect_mini \\
        --name person_detect_mini --eval 6 --calibration 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml
from PIL import Image

logger = logging.getLogger(__name__)

PACK_VERSION = "1.0.0"
DEFAULT_SEED = 20240917
FACE_MIN_PX = 22.0  # narrowest face the pack asks for (MTCNN's min_face_size is 20)
FACE_MAX_PX = 70.0
FACE_MAX_PX_PAIR = 46.0  # two people must fit side by side without covering a face
BORDER_MARGIN_PX = 2.0  # a face never touches the image border
FEATHER_START = 0.72  # alpha is 1 inside this normalised ellipse radius, 0 at radius 1
# Share of images with 0, 1 and 2 people; exact counts per split, then shuffled.
PEOPLE_MIX = (0.22, 0.48, 0.30)


@dataclass(frozen=True)
class PersonSource:
    name: str
    package: str
    loader: str
    license: str
    attribution: str
    # Face box [x1, y1, x2, y2] in the source photo's pixels. Found once by running
    # facenet_pytorch 2.6.0's FP32 MTCNN (keep_all=True, default thresholds, CPU) on
    # the full photo; each photo gave exactly one face (probabilities 1.000, 0.999,
    # 1.000), and each box was checked by eye on a drawn copy. Rounded to 0.1 px.
    face_box: tuple[float, float, float, float]


@dataclass(frozen=True)
class BackgroundSource:
    name: str
    package: str
    loader: str
    license: str
    attribution: str


PEOPLE: tuple[PersonSource, ...] = (
    PersonSource(
        name="astronaut",
        package="scikit-image",
        loader="skimage.data.astronaut()",
        license="No known copyright restrictions, released into the public domain.",
        attribution="Eileen Collins, NASA Great Images database (https://flic.kr/p/r9qvLn)",
        face_box=(181.1, 62.2, 267.7, 172.1),
    ),
    PersonSource(
        name="camera",
        package="scikit-image",
        loader="skimage.data.camera() (grayscale, repeated to 3 channels)",
        license="No copyright restrictions. CC0 by the photographer (Lav Varshney).",
        attribution="Lav Varshney (scikit-image 'camera', replaced in 0.18)",
        face_box=(199.2, 118.9, 254.3, 192.3),
    ),
    PersonSource(
        name="grace_hopper",
        package="matplotlib",
        loader="matplotlib.cbook.get_sample_data('grace_hopper.jpg')",
        license=(
            "Public domain, as described by matplotlib PR #1599 that added it; the "
            "sample_data README.txt shipped with matplotlib carries no licence notice."
        ),
        attribution="Official portrait of Grace Murray Hopper, U.S. Navy",
        face_box=(174.4, 119.6, 355.6, 340.5),
    ),
)

# Real photos without people; FP32 MTCNN finds no face in any of them.
BACKGROUNDS: tuple[BackgroundSource, ...] = (
    BackgroundSource(
        "coffee", "scikit-image", "skimage.data.coffee()",
        "No copyright restrictions. CC0 by the photographer (Rachel Michetti).",
        "Courtesy of Pikolo Espresso Bar",
    ),
    BackgroundSource(
        "chelsea", "scikit-image", "skimage.data.chelsea()",
        "No copyright restrictions. CC0 by the photographer (Stefan van der Walt).",
        "Chelsea the cat",
    ),
    BackgroundSource(
        "rocket", "scikit-image", "skimage.data.rocket()",
        "Captured by SpaceX and released in the public domain.",
        "SpaceX Photos: Falcon 9 launch carrying DSCOVR",
    ),
    BackgroundSource(
        "brick", "scikit-image", "skimage.data.brick() (grayscale, repeated to 3 channels)",
        "Creative Commons CC0 License (original from CC0Textures, Bricks25).",
        "CC0Textures Bricks25, perspective-corrected, rotated, cropped and scaled",
    ),
    BackgroundSource(
        "grass", "scikit-image", "skimage.data.grass() (grayscale, repeated to 3 channels)",
        "Creative Commons CC0 License (original from DeviantArt, Grass-01 by linolafett).",
        "DeviantArt linolafett Grass-01, cropped and converted to grayscale",
    ),
    BackgroundSource(
        "gravel", "scikit-image", "skimage.data.gravel() (grayscale, repeated to 3 channels)",
        "Creative Commons CC0 License (original from CC0Textures, Gravel04).",
        "CC0Textures Gravel04, rescaled, cropped and converted to grayscale",
    ),
    BackgroundSource(
        "hubble_deep_field", "scikit-image", "skimage.data.hubble_deep_field()",
        "Captured by NASA; may be freely used in the public domain.",
        "HubbleSite, Hubble eXtreme Deep Field (2012)",
    ),
    BackgroundSource(
        "immunohistochemistry", "scikit-image", "skimage.data.immunohistochemistry()",
        "No known copyright restrictions.",
        "Center for Microscopy And Molecular Imaging (CMMI)",
    ),
)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def _load_grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _loaders() -> dict[str, Callable[[], np.ndarray]]:
    import skimage.data as data

    loaders: dict[str, Callable[[], np.ndarray]] = {
        "astronaut": data.astronaut,
        "camera": data.camera,
        "grace_hopper": _load_grace_hopper,
    }
    for bg in BACKGROUNDS:
        loaders[bg.name] = getattr(data, bg.name)
    return loaders


@dataclass
class _Person:
    pixels: np.ndarray  # head-and-shoulders crop, HxWx3 uint8
    face: np.ndarray  # face box in crop pixels
    ideal: np.ndarray  # unclipped head-and-shoulders rect in crop pixels (for the mask)


def _head_and_shoulders(name: str, image: np.ndarray, face_box: tuple[float, ...]) -> _Person:
    x1, y1, x2, y2 = face_box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    ideal = np.array([cx - 1.1 * w, y1 - 0.6 * h, cx + 1.1 * w, y2 + 0.9 * h])
    cx0 = max(0, math.floor(ideal[0]))
    cy0 = max(0, math.floor(ideal[1]))
    cx1 = min(image.shape[1], math.ceil(ideal[2]))
    cy1 = min(image.shape[0], math.ceil(ideal[3]))
    offset = np.array([cx0, cy0, cx0, cy0], dtype=np.float64)
    logger.debug("%s: head-and-shoulders crop %s", name, (cx0, cy0, cx1, cy1))
    return _Person(
        pixels=image[cy0:cy1, cx0:cx1].copy(),
        face=np.array(face_box, dtype=np.float64) - offset,
        ideal=ideal - offset,
    )


def _elliptical_alpha(width: int, height: int, ideal: np.ndarray) -> np.ndarray:
    """Feathered ellipse inscribed in the rect ``ideal``, sampled at this grid's pixel centres."""
    ex = (ideal[0] + ideal[2]) / 2
    ey = (ideal[1] + ideal[3]) / 2
    ax = (ideal[2] - ideal[0]) / 2
    ay = (ideal[3] - ideal[1]) / 2
    xs = (np.arange(width) + 0.5 - ex) / ax
    ys = (np.arange(height) + 0.5 - ey) / ay
    r = np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2)
    t = np.clip((1.0 - r) / (1.0 - FEATHER_START), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)  # smoothstep: no visible seam


@dataclass
class _Placed:
    pixels: np.ndarray  # float32 HxWx3, already jittered and flipped
    alpha: np.ndarray  # float32 HxW in [0, 1]
    x: int
    y: int
    face: np.ndarray  # face box in output image pixels


def _max_face_width(person: _Person, width: int, height: int, pair: bool) -> float:
    fw = person.face[2] - person.face[0]
    fh = person.face[3] - person.face[1]
    limit = FACE_MAX_PX_PAIR if pair else FACE_MAX_PX
    fit_h = (height - 2 * BORDER_MARGIN_PX - 1) * fw / fh
    fit_w = width - 2 * BORDER_MARGIN_PX - 1
    return min(limit, fit_h, fit_w)


def _place(
    rng: np.random.Generator, person: _Person, width: int, height: int, pair: bool
) -> _Placed:
    crop_h, crop_w = person.pixels.shape[:2]
    src_fw = person.face[2] - person.face[0]
    hi = _max_face_width(person, width, height, pair)
    lo = min(FACE_MIN_PX, hi)
    target_fw = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    scale = target_fw / src_fw
    new_w = max(1, round(crop_w * scale))
    new_h = max(1, round(crop_h * scale))
    sx, sy = new_w / crop_w, new_h / crop_h
    # PIL maps pixel edges to pixel edges, so a box scales by (sx, sy) exactly.
    pixels = np.asarray(
        Image.fromarray(person.pixels).resize((new_w, new_h), Image.Resampling.LANCZOS),
        dtype=np.float32,
    )
    scale_vec = np.array([sx, sy, sx, sy])
    face = person.face * scale_vec
    ideal = person.ideal * scale_vec
    alpha = _elliptical_alpha(new_w, new_h, ideal).astype(np.float32)

    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
        alpha = alpha[:, ::-1]
        face = np.array([new_w - face[2], face[1], new_w - face[0], face[3]])

    contrast = rng.uniform(0.8, 1.2)
    brightness = rng.uniform(-25.0, 25.0)
    mean = float(pixels.mean())
    pixels = np.clip((pixels - mean) * contrast + mean + brightness, 0.0, 255.0)

    # Integer offsets keep the transformed face box exact.
    x_lo = math.ceil(BORDER_MARGIN_PX - face[0])
    x_hi = math.floor(width - BORDER_MARGIN_PX - face[2])
    y_lo = math.ceil(BORDER_MARGIN_PX - face[1])
    y_hi = math.floor(height - BORDER_MARGIN_PX - face[3])
    if x_lo > x_hi or y_lo > y_hi:
        raise RuntimeError(f"face of {target_fw:.1f} px does not fit a {width}x{height} image")
    x = int(rng.integers(x_lo, x_hi + 1))
    y = int(rng.integers(y_lo, y_hi + 1))
    return _Placed(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        alpha=np.ascontiguousarray(alpha),
        x=x,
        y=y,
        face=face + np.array([x, y, x, y], dtype=np.float64),
    )


def _alpha_on_canvas(p: _Placed, width: int, height: int) -> np.ndarray:
    canvas = np.zeros((height, width), dtype=np.float32)
    h, w = p.alpha.shape
    x0, y0 = max(p.x, 0), max(p.y, 0)
    x1, y1 = min(p.x + w, width), min(p.y + h, height)
    if x0 < x1 and y0 < y1:
        canvas[y0:y1, x0:x1] = p.alpha[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
    return canvas


def _conflicts(new: _Placed, placed: list[_Placed], width: int, height: int) -> bool:
    """True if ``new`` would touch an earlier face box or cover any of it."""
    new_alpha = _alpha_on_canvas(new, width, height)
    for old in placed:
        gap = 3.0
        if not (
            new.face[2] + gap <= old.face[0]
            or old.face[2] + gap <= new.face[0]
            or new.face[3] + gap <= old.face[1]
            or old.face[3] + gap <= new.face[1]
        ):
            return True
        x0, y0 = math.floor(old.face[0]), math.floor(old.face[1])
        x1, y1 = math.ceil(old.face[2]), math.ceil(old.face[3])
        if float(new_alpha[y0:y1, x0:x1].max(initial=0.0)) > 0.02:
            return True
    return False


def _background(rng: np.random.Generator, photo: np.ndarray, width: int, height: int) -> np.ndarray:
    ph, pw = photo.shape[:2]
    aspect = width / height
    max_w = min(pw, ph * aspect)
    crop_w = rng.uniform(0.35, 1.0) * max_w
    crop_h = crop_w / aspect
    x0 = rng.uniform(0, pw - crop_w)
    y0 = rng.uniform(0, ph - crop_h)
    box = (x0, y0, x0 + crop_w, y0 + crop_h)
    out = Image.fromarray(photo).resize((width, height), Image.Resampling.LANCZOS, box=box)
    pixels = np.asarray(out, dtype=np.float32)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels)


def _people_counts(rng: np.random.Generator, n: int) -> list[int]:
    zeros = round(n * PEOPLE_MIX[0])
    twos = round(n * PEOPLE_MIX[2])
    if n >= 2:
        zeros = max(zeros, 1)
    ones = max(n - zeros - twos, 0)
    counts = [0] * zeros + [1] * ones + [2] * (n - zeros - ones)
    rng.shuffle(counts)
    return counts


def _compose(
    rng: np.random.Generator,
    n_people: int,
    people: dict[str, _Person],
    backgrounds: dict[str, np.ndarray],
    width: int,
    height: int,
) -> tuple[np.ndarray, list[list[float]], list[str], str]:
    bg_name = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))].name
    canvas = _background(rng, backgrounds[bg_name], width, height)
    names = [PEOPLE[i].name for i in rng.permutation(len(PEOPLE))[:n_people]]
    placed: list[_Placed] = []
    used: list[str] = []
    for name in names:
        for _attempt in range(200):
            candidate = _place(rng, people[name], width, height, pair=n_people > 1)
            if not _conflicts(candidate, placed, width, height):
                placed.append(candidate)
                used.append(name)
                break
        else:
            logger.warning("could not place %s without covering a face; one person fewer", name)
    for p in placed:
        h, w = p.alpha.shape
        x0, y0 = max(p.x, 0), max(p.y, 0)
        x1, y1 = min(p.x + w, width), min(p.y + h, height)
        a = p.alpha[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x, None]
        src = p.pixels[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
        canvas[y0:y1, x0:x1] = a * src + (1.0 - a) * canvas[y0:y1, x0:x1]
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    boxes = [[round(float(v), 2) for v in p.face] for p in placed]
    return image, boxes, used, bg_name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _environment() -> dict[str, str]:
    import matplotlib
    import PIL
    import skimage

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "scikit-image": skimage.__version__,
        "matplotlib": matplotlib.__version__,
    }


def build(
    out: Path,
    *,
    name: str,
    n_eval: int,
    n_calibration: int,
    width: int,
    height: int,
    seed: int,
) -> dict[str, Any]:
    """Write the pack into ``out`` and return the manifest it wrote."""
    loaders = _loaders()
    people = {
        p.name: _head_and_shoulders(p.name, _rgb(loaders[p.name]()), p.face_box) for p in PEOPLE
    }
    backgrounds = {b.name: _rgb(loaders[b.name]()) for b in BACKGROUNDS}

    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    splits: dict[str, dict[str, Any]] = {}
    seen_images: dict[str, str] = {}
    # Each split draws from its own seed stream, so eval and calibration never share a crop.
    for index, (split, prefix, count) in enumerate(
        (("eval", "eval", n_eval), ("calibration", "calib", n_calibration))
    ):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        image_dir = out / "images" / split
        if image_dir.exists():
            shutil.rmtree(image_dir)
        image_dir.mkdir(parents=True)
        lines: list[str] = []
        for i, n_people in enumerate(_people_counts(rng, count)):
            sample_id = f"{prefix}-{i:04d}"
            image, boxes, used, bg_name = _compose(
                rng, n_people, people, backgrounds, width, height
            )
            rel = f"images/{split}/{sample_id}.png"
            Image.fromarray(image).save(out / rel, format="PNG", optimize=True)
            key = hashlib.sha256(image.tobytes()).hexdigest()
            if key in seen_images:
                raise RuntimeError(f"{rel} repeats {seen_images[key]}; change the seed")
            seen_images[key] = rel
            written.append(rel)
            record = {
                "id": sample_id,
                "image": rel,
                "boxes": boxes,
                "source": used,
                "background": bg_name,
            }
            lines.append(json.dumps(record))
        samples_file = f"{split}.jsonl"
        (out / samples_file).write_text("\n".join(lines) + "\n" if lines else "", encoding="utf-8")
        written.append(samples_file)
        splits[split] = {"samples": samples_file, "count": count}

    script = Path(__file__).resolve()
    if script.parent != out.resolve():
        shutil.copyfile(script, out / script.name)  # every pack carries the script that built it
    written.append(script.name)

    manifest: dict[str, Any] = {
        "name": name,
        "version": PACK_VERSION,
        "modality": "vision",
        "task": "detection",
        "description": (
            "Face/person detection on real photos: head-and-shoulders crops of people "
            "pasted onto people-free photos with feathered masks, so every face box is "
            "known exactly. 0, 1 or 2 faces per image, faces 22-70 px wide."
        ),
        "input": {
            "kind": "image",
            "color": "RGB",
            "height": height,
            "width": width,
            "dtype": "uint8",
        },
        "splits": splits,
        "scorers": ["detection"],
        "classes": ["face"],
        "sources": [
            {
                "name": s.name,
                "role": role,
                "package": s.package,
                "loader": s.loader,
                "license": s.license,
                "attribution": s.attribution,
            }
            for role, group in (("person", PEOPLE), ("background", BACKGROUNDS))
            for s in group
        ],
        "build": {
            "script": script.name,
            "seed": seed,
            "args": {
                "name": name,
                "eval": n_eval,
                "calibration": n_calibration,
                "width": width,
                "height": height,
            },
            "environment": _environment(),
        },
        "files": {rel: _sha256(out / rel) for rel in sorted(written)},
    }
    text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100)
    (out / "manifest.yaml").write_text(text, encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=here, help="pack directory (default: this script's)"
    )
    parser.add_argument("--name", default="person_detect")
    parser.add_argument("--eval", type=int, default=160, dest="n_eval")
    parser.add_argument("--calibration", type=int, default=32, dest="n_calibration")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if args.n_eval < 0 or args.n_calibration < 0:
        parser.error("--eval and --calibration must be >= 0")
    if args.width < 48 or args.height < 48:
        parser.error("--width and --height must be >= 48 to fit a 22 px face with its margin")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    manifest = build(
        args.out,
        name=args.name,
        n_eval=args.n_eval,
        n_calibration=args.n_calibration,
        width=args.width,
        height=args.height,
        seed=args.seed,
    )
    total = sum((args.out / rel).stat().st_size for rel in manifest["files"])
    n_files = len(manifest["files"])
    print(f"wrote {args.out} ({n_files} files, {total / 1e6:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
