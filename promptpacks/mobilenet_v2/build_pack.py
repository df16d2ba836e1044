"""Rebuild the mobilenet_v2 PromptPack: real photos that ship in scikit-image and matplotlib,
and crops of them, as an ImageNet image-classification pack made by `edgegate pack create`.

The script only assembles the source folder a user would have (one subfolder per class for
the photos with an obvious ImageNet class, loose images for the rest) and then runs the
same command the README shows:

    edgegate pack create SOURCE --out promptpacks/mobilenet_v2 --classes-file imagenet_classes.txt ...

Labels say what the photo shows, not what the model predicts: Chelsea is a tabby cat
(MobileNetV2 says "Egyptian cat"), Grace Hopper wears a military uniform (it says "bow
tie"). Photos with no obvious ImageNet class (a Falcon 9 on its pad, a spacesuit, a retina,
the Hubble deep field, ...) are unlabelled and count for FP32-vs-INT8 agreement only.

Deterministic: the same scikit-image, matplotlib and Pillow give byte-identical images (a
fixed crop, Lanczos resize to a shorter side of 256 px, JPEG quality 90), and pack create
gives the same pack for the same files and options.

    python promptpacks/mobilenet_v2/build_pack.py                  # the shipped pack
    python promptpacks/mobilenet_v2/build_pack.py --source-only DIR   # only the source folder
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SHORTER_SIDE = 256
JPEG_QUALITY = 90
CALIBRATION = 10
SEED = 0


@dataclass(frozen=True)
class Photo:
    name: str
    package: str
    loader: str
    license: str
    attribution: str


@dataclass(frozen=True)
class Crop:
    photo: str
    name: str  # the file name in the pack, without extension
    box: tuple[int, int, int, int] | None  # left, top, right, bottom in the photo; None: all of it
    label: str | None  # an ImageNet class name the crop obviously shows; None: unlabelled


PHOTOS = (
    Photo("chelsea", "scikit-image", "skimage.data.chelsea()", "CC0", "Stefan van der Walt (Chelsea the cat)"),
    Photo("coffee", "scikit-image", "skimage.data.coffee()", "CC0",
          "Rachel Michetti, courtesy of Pikolo Espresso Bar"),
    Photo("astronaut", "scikit-image", "skimage.data.astronaut()", "public domain",
          "NASA (Eileen Collins, NASA Great Images database)"),
    Photo("camera", "scikit-image", "skimage.data.camera()", "CC0", "Lav Varshney"),
    Photo("rocket", "scikit-image", "skimage.data.rocket()", "public domain",
          "SpaceX (Falcon 9 launch carrying DSCOVR)"),
    Photo("hubble_deep_field", "scikit-image", "skimage.data.hubble_deep_field()", "public domain",
          "NASA (HubbleSite, Hubble eXtreme Deep Field)"),
    Photo("retina", "scikit-image", "skimage.data.retina()", "CC0", "Mikael Haggstrom (fundus photograph)"),
    Photo("immunohistochemistry", "scikit-image", "skimage.data.immunohistochemistry()",
          "no known copyright restrictions", "Center for Microscopy And Molecular Imaging (CMMI)"),
    Photo("coins", "scikit-image", "skimage.data.coins()", "no known copyright restrictions",
          "Brooklyn Museum Collection (Greek coins from Pompeii)"),
    Photo("clock", "scikit-image", "skimage.data.clock()", "public domain", "Stefan van der Walt"),
    Photo("grace_hopper", "matplotlib", "matplotlib.cbook.get_sample_data('grace_hopper.jpg')",
          "public domain", "U.S. Navy (official portrait of Grace Murray Hopper)"),
)

CROPS = (
    Crop("chelsea", "chelsea", None, "tabby"),
    Crop("chelsea", "chelsea-face", (60, 0, 400, 300), "tabby"),
    Crop("chelsea", "chelsea-left", (0, 0, 300, 300), "tabby"),
    Crop("chelsea", "chelsea-right", (150, 0, 451, 300), "tabby"),
    Crop("coffee", "coffee", None, "espresso"),
    Crop("coffee", "coffee-cup", (150, 0, 450, 300), "espresso"),
    Crop("coffee", "coffee-left", (0, 0, 400, 400), "espresso"),
    Crop("coffee", "coffee-spoon", (290, 190, 460, 360), None),
    Crop("coffee", "coffee-table", (430, 120, 600, 400), None),
    Crop("grace_hopper", "grace_hopper", None, "military uniform"),
    Crop("grace_hopper", "grace_hopper-uniform", (40, 300, 512, 600), "military uniform"),
    Crop("grace_hopper", "grace_hopper-face", (140, 20, 390, 340), None),
    Crop("grace_hopper", "grace_hopper-flag", (0, 0, 170, 360), None),
    Crop("camera", "camera", None, "tripod"),
    Crop("camera", "camera-tripod", (200, 280, 430, 512), "tripod"),
    Crop("camera", "camera-head", (140, 50, 350, 260), None),
    Crop("camera", "camera-skyline", (320, 90, 512, 270), None),
    Crop("astronaut", "astronaut", None, None),
    Crop("astronaut", "astronaut-shuttle", (340, 0, 480, 290), "space shuttle"),
    Crop("astronaut", "astronaut-face", (130, 0, 330, 210), None),
    Crop("astronaut", "astronaut-helmet", (270, 330, 512, 512), None),
    Crop("astronaut", "astronaut-flag", (0, 0, 130, 360), None),
    Crop("astronaut", "astronaut-patch", (110, 320, 240, 450), None),
    Crop("rocket", "rocket", None, None),
    Crop("rocket", "rocket-vehicle", (230, 100, 410, 427), None),
    Crop("rocket", "rocket-tower", (0, 0, 200, 427), None),
    Crop("rocket", "rocket-lights", (60, 300, 640, 427), None),
    Crop("hubble_deep_field", "hubble_deep_field", None, None),
    Crop("hubble_deep_field", "hubble_deep_field-detail", (300, 300, 600, 600), None),
    Crop("retina", "retina", None, None),
    Crop("retina", "retina-disc", (500, 350, 1000, 850), None),
    Crop("immunohistochemistry", "immunohistochemistry", None, None),
    Crop("immunohistochemistry", "immunohistochemistry-gland", (0, 250, 260, 512), None),
    Crop("coins", "coins", None, None),
    Crop("clock", "clock", None, None),
)


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _loaders() -> dict[str, Callable[[], np.ndarray]]:
    import skimage.data

    loaders: dict[str, Callable[[], np.ndarray]] = {"grace_hopper": _grace_hopper}
    for photo in PHOTOS:
        if photo.package == "scikit-image":
            loaders[photo.name] = getattr(skimage.data, photo.name)
    return loaders


def _rgb(pixels: np.ndarray) -> Image.Image:
    if pixels.ndim == 2:  # grayscale photos (camera, coins, clock) as three equal channels
        pixels = np.stack([pixels] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(pixels[..., :3], dtype=np.uint8))


def _resized(image: Image.Image) -> Image.Image:
    w, h = image.size
    scale = SHORTER_SIDE / min(w, h)
    return image.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)


def assemble_source(out: Path) -> list[Path]:
    """Write the source folder pack create reads: labelled crops in class folders, the rest loose."""
    loaders = _loaders()
    photos = {name: _rgb(load()) for name, load in loaders.items()}
    written = []
    for crop in CROPS:
        image = photos[crop.photo]
        if crop.box is not None:
            image = image.crop(crop.box)
        folder = out / crop.label if crop.label is not None else out
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{crop.name}.jpg"
        _resized(image).save(path, format="JPEG", quality=JPEG_QUALITY)
        written.append(path)
    return written


def imagenet_classes_file(path: Path) -> Path:
    """The 1000 class names in MobileNetV2's output order (torchvision's weights metadata)."""
    from edgegate.zoo.mobilenet import imagenet_classes

    path.write_text("\n".join(imagenet_classes()) + "\n", encoding="utf-8")
    return path


def pack_create_args(source: Path, out: Path, classes_file: Path) -> list[str]:
    licences = sorted({p.license for p in PHOTOS})
    attribution = "; ".join(f"{p.name}: {p.attribution} ({p.license}, {p.loader})" for p in PHOTOS)
    return [
        "pack", "create", str(source), "--out", str(out), "--force",
        "--classes-file", str(classes_file),
        "--calibration", str(CALIBRATION), "--seed", str(SEED),
        "--name", "mobilenet_v2",
        "--description",
        ("ImageNet classification on real photos from scikit-image and matplotlib and crops of them "
        f"(shorter side {SHORTER_SIDE} px): {sum(c.label is not None for c in CROPS)} labelled with the "
        "ImageNet class they obviously show, the rest unlabelled (FP32-vs-INT8 agreement only)."),
        "--source", "scikit-image and matplotlib sample photos (crops)",
        "--license", "each photo's own: " + ", ".join(licences),
        "--attribution", attribution,
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="where the pack goes (default: this folder)")
    ap.add_argument("--source-only", type=Path, default=None, metavar="DIR",
                    help="only assemble the source folder (and imagenet_classes.txt beside it) in DIR")
    args = ap.parse_args(argv)
    if args.source_only is not None:
        assemble_source(args.source_only)
        imagenet_classes_file(args.source_only.parent / "imagenet_classes.txt")
        return 0
    edgegate = Path(sys.executable).parent / "edgegate"
    command = [str(edgegate)] if edgegate.is_file() else [sys.executable, "-c", "from edgegate.cli import main; main()"]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "photos"
        assemble_source(source)
        classes = imagenet_classes_file(Path(tmp) / "imagenet_classes.txt")
        built = Path(tmp) / "mobilenet_v2"
        done = subprocess.run(command + pack_create_args(source, built, classes), check=False)
        if done.returncode == 0:
            _replace_pack(built, args.out.resolve())
    return done.returncode


def _replace_pack(built: Path, out: Path) -> None:
    """The new pack's files in ``out``, the old ones gone; this script stays beside them."""
    script = Path(__file__).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old == script:
            continue
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    for item in built.iterdir():
        shutil.move(str(item), out / item.name)


if __name__ == "__main__":
    sys.exit(main())
