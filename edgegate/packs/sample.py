"""One evaluation sample of a PromptPack (what an adapter feeds and a scorer reads) and
the model's prediction for it.

It lives apart from the pack loader so scorers and adapters can name it without
importing the loader (which itself asks the scorer registry for known scorer names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

import numpy as np
from PIL import Image

from edgegate.errors import InputError


@dataclass(frozen=True)
class Sample:
    id: str
    split: str
    image_path: Path | None  # absolute; None for text samples
    # detection: {"boxes": np.ndarray (N, 4) float32, x1 y1 x2 y2 pixels};
    # object-detection: {"boxes": as detection, "labels": list[str], one class name per box};
    # image-/text-classification: {"label": str}, or {} when the sample is not labelled;
    # intent-classification: {"label": str}; language-modeling: {}
    target: dict[str, Any]
    sha256: str  # of the image file (from the manifest), or of the UTF-8 text
    text: str | None = None  # text samples only

    def load_image(self) -> np.ndarray:
        """The image as an HxWx3 uint8 RGB array."""
        if self.image_path is None:
            raise InputError(
                f"sample '{self.id}' of split '{self.split}' is a text sample and has no image; "
                "read sample.text (a text adapter implements predict_sample)"
            )
        return decode_image(self.image_path)


def decode_image(source: Path | BinaryIO) -> np.ndarray:
    """An image file (path or open binary file) as an HxWx3 uint8 RGB array, decoded in
    full, so a truncated or corrupt file fails here (PIL's OSError or ValueError)."""
    with Image.open(source) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


# A model's output for one sample; its keys depend on the task.
Prediction = Mapping[str, Any]


class DetectionPrediction(TypedDict):
    boxes: np.ndarray  # (N, 4) float, [x1, y1, x2, y2] in image pixels, after NMS and thresholding
    scores: np.ndarray  # (N,) confidence, used to rank detections for matching and map50
