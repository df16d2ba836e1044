"""The ``image-classification`` preset: preprocessing declared in the pipeline, the
model's output vector as the prediction.

Preprocessing, in order (torchvision's conventions, so a torchvision model's documented
transforms translate one to one):

1. ``resize``: an int resizes the shorter side to it (the longer side keeps the aspect
   ratio, rounded down), ``[height, width]`` resizes exactly; none: exactly to the
   input's declared size when there is no ``crop`` either (``interpolation``, PIL's
   filters);
2. ``crop``: a centre crop, an int (square) or ``[height, width]`` (zero padding when the
   image is smaller);
3. ``channel_order``, then ``x * scale``, minus ``mean``, divided by ``std`` (per channel,
   in the order fed), unless ``dtype`` is uint8 (raw pixels);
4. ``layout`` NCHW or NHWC, batch of one, ``dtype``.

The shape this gives is checked against the declared input at load time. The prediction
is ``{"logits": (C,), "output": "logits" | "probabilities", "top_labels": (k,)}``, the
last when the model's class names are known (``class_names``, default: the pack's classes),
so the ``classification`` scorer can compare labels (names) with the model's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from PIL import Image
from pydantic import Field, field_validator, model_validator

from edgegate.config import FieldProblem
from edgegate.errors import InputError
from edgegate.packs.adapters.base import GraphRunner, Prediction
from edgegate.packs.adapters.presets import (
    GraphInfo,
    OptionError,
    Preset,
    PresetContext,
    PresetOptions,
    check_dtype,
    check_shape,
    ClassNamesOption,
    class_names,
    select_input,
    select_outputs,
    top_labels,
)

PositiveInt = Annotated[int, Field(ge=1)]
Size = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
Triple = Annotated[list[float], Field(min_length=3, max_length=3)]
RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


class PixelOptions(PresetOptions):
    """How pixels become the input tensor (shared with ``object-detection``)."""

    input: str | None = Field(None, description="the graph input fed with the image (default: the only one)")
    channel_order: Literal["RGB", "BGR"] = Field("RGB", description="the channel order the model was trained on")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="the input tensor's layout")
    dtype: Literal["float32", "float16", "uint8"] = Field(
        "float32", description="the dtype fed (uint8: raw pixels, no scale/mean/std)")
    scale: float = Field(1.0 / 255.0, description="pixels 0..255 are multiplied by this first")
    mean: Triple | None = Field(None, description="per channel (in the order fed), subtracted after scale")
    std: Triple | None = Field(None, description="per channel, divides after mean")
    interpolation: Literal["bilinear", "bicubic", "nearest"] = Field(
        "bilinear", description="PIL's resampling filter for resizes")

    @field_validator("std")
    @classmethod
    def _std_positive(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and min(value) <= 0:
            raise ValueError(f"every std must be > 0, got {value}")
        return value

    @model_validator(mode="after")
    def _raw_pixels(self) -> PixelOptions:
        if self.dtype == "uint8":
            for name in ("scale", "mean", "std"):
                if name in self.model_fields_set:
                    raise FieldProblem(name, "dtype uint8 feeds raw pixels 0..255; remove it")
        return self

    def to_tensor(self, rgb: np.ndarray) -> np.ndarray:
        """An HxWx3 uint8 RGB array as the (1, ...) input tensor."""
        x = rgb[..., ::-1] if self.channel_order == "BGR" else rgb
        if self.dtype == "uint8":
            x = np.ascontiguousarray(x, dtype=np.uint8)
        else:
            x = x.astype(np.float32) * np.float32(self.scale)
            if self.mean is not None:
                x = x - np.asarray(self.mean, dtype=np.float32)
            if self.std is not None:
                x = x / np.asarray(self.std, dtype=np.float32)
        if self.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None], dtype=np.dtype(self.dtype))

    def feed_shape(self, height: int, width: int) -> tuple[int, ...]:
        return (1, 3, height, width) if self.layout == "NCHW" else (1, height, width, 3)


def declared_hw(graph: GraphInfo, index: int, layout: str) -> tuple[int, int]:
    """(height, width) of a declared image input [1, 3, H, W] (NCHW) or [1, H, W, 3] (NHWC)."""
    shape = graph.inputs[index].shape
    if len(shape) != 4 or shape[0] != 1 or shape[1 if layout == "NCHW" else 3] != 3:
        other = "NHWC" if layout == "NCHW" else "NCHW"
        fits_other = len(shape) == 4 and shape[0] == 1 and shape[3 if layout == "NCHW" else 1] == 3
        hint = f"; the model looks {other} (set layout: {other})" if fits_other else ""
        raise OptionError("layout", f"{graph.field(index)}.shape {list(shape)} is not a "
                          f"batch of one 3-channel {layout} image{hint}")
    return (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])


def resize_shorter(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """torchvision's Resize(int): the shorter side to ``size``, the longer rounded down."""
    w, h = image.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    return image.resize((new_w, new_h), resample)


def centre_crop(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """torchvision's CenterCrop: zero padding when the image is smaller, then the centre."""
    h, w = rgb.shape[:2]
    if height > h or width > w:
        top, left = max(height - h, 0) // 2, max(width - w, 0) // 2
        padded = np.zeros((max(h, height), max(w, width), 3), dtype=rgb.dtype)
        padded[top : top + h, left : left + w] = rgb
        rgb, (h, w) = padded, padded.shape[:2]
    top, left = round((h - height) / 2.0), round((w - width) / 2.0)
    return rgb[top : top + height, left : left + width]


def class_vector(out: np.ndarray, preset: str, output: str) -> np.ndarray:
    """A classifier output [1, C] (or any shape with one non-unit axis) as (C,)."""
    arr = np.asarray(out)
    dims = [d for d in arr.shape if d != 1]
    if arr.size == 0 or len(dims) > 1:
        raise InputError(f"{preset}: graph output '{output}' has shape {list(arr.shape)}; "
                         "expected class scores [1, C]")
    return arr.reshape(-1).astype(np.float32)


class ImageClassificationOptions(PixelOptions):
    resize: Size | None = Field(None, description="an int resizes the shorter side, [height, width] exactly "
                                "(default: exactly to the input's size when there is no crop)")
    crop: Size | None = Field(None, description="centre crop, an int (square) or [height, width]")
    output: Literal["logits", "probabilities"] = Field(
        "logits", description="what the model outputs: logits, or probabilities when it ends in a softmax")
    output_name: str | None = Field(None, description="the graph output with the class scores (default: the first)")
    class_names: ClassNamesOption = None


def _pair(size: int | list[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[1])


@dataclass(frozen=True)
class ImageClassificationAdapter:
    """Image -> preprocessing -> graph -> the model's class scores."""

    options: ImageClassificationOptions
    graph: str
    input: str
    input_shape: tuple[int, ...]
    output_index: int
    output_name: str
    names: tuple[str, ...]  # the model's classes in output order; () when unknown

    preset = "image-classification"

    def expected_inputs(self) -> dict[str, dict[str, tuple[int, ...]]]:
        return {self.graph: {self.input: self.input_shape}}

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        o = self.options
        resample = RESAMPLING[o.interpolation]
        image = Image.fromarray(rgb)
        if isinstance(o.resize, int):
            image = resize_shorter(image, o.resize, resample)
        elif o.resize is not None or o.crop is None:
            height, width = _pair(o.resize) if o.resize is not None else self._hw()
            image = image.resize((width, height), resample)
        out = np.asarray(image.convert("RGB"), dtype=np.uint8)
        if o.crop is not None:
            out = centre_crop(out, *_pair(o.crop))
        return o.to_tensor(out)

    def _hw(self) -> tuple[int, int]:
        s = self.input_shape
        return (s[2], s[3]) if self.options.layout == "NCHW" else (s[1], s[2])

    def predict(self, image: np.ndarray, run: GraphRunner) -> Prediction:
        outs = run(self.graph, {self.input: self.preprocess(image)})
        v = class_vector(outs[self.output_index], self.preset, self.output_name)
        pred: dict[str, Any] = {"logits": v, "output": np.asarray(self.options.output)}
        if self.names:
            if len(self.names) != v.size:
                raise InputError(
                    f"{self.preset}: graph output '{self.output_name}' gives {v.size} class scores but "
                    f"the class names are {len(self.names)} (adapter_options.class_names; default: "
                    "the pack's classes)"
                )
            pred["top_labels"] = top_labels(v, self.names)
        return pred


def build_image_classification(o: ImageClassificationOptions, ctx: PresetContext) -> ImageClassificationAdapter:
    g = ctx.graph(o)
    index, tensor = select_input(g, o.input)
    check_dtype(g, index, o.dtype)
    declared = declared_hw(g, index, o.layout)
    if isinstance(o.resize, int) and o.crop is None:
        raise OptionError("resize", "a shorter-side resize gives images of varying size; "
                          "add crop (the model's input size) or give resize: [height, width]")
    if o.crop is not None:
        size, field = _pair(o.crop), "crop"
    elif o.resize is not None:
        size, field = _pair(o.resize), "resize"
    else:
        size, field = declared, "layout"
    shape = o.feed_shape(*size)
    check_shape(g, index, shape, field, f"{field} {getattr(o, field)}")
    (out,) = select_outputs(g, None if o.output_name is None else [o.output_name], ("class scores",), "output_name")
    names = class_names(o.class_names, ctx)
    return ImageClassificationAdapter(o, g.name, tensor.name, shape, out, g.outputs[out], names)


PRESET = Preset(
    "image-classification", ImageClassificationOptions, build_image_classification, "vision",
    "preprocessing in YAML (resize, crop, mean/std, RGB/BGR, NCHW/NHWC); the model's class scores",
)
