"""The ``object-detection`` preset: letterbox (or stretch) preprocessing, one of three
decoders for the output layouts detection exports have, thresholding and NMS on the host,
boxes mapped back to the original image.

Decoders (``decoder``):

* ``yolo``: one tensor [1, 4+C, N] (ultralytics' ONNX export; ``yolo_layout: BNC`` for
  [1, N, 4+C]): cx, cy, w, h then C class scores per candidate;
* ``ssd``: a boxes tensor [1, N, 4] and a scores tensor [1, N, C] (``background: true``
  when column 0 is a background class), boxes ``xyxy`` or ``yxyx``;
* ``decoded``: boxes [1, N, 4], scores [1, N] and class ids [1, N], already decoded
  (the export ran its own NMS; ours then only drops duplicates above ``nms_iou``).

Boxes are model-input pixels, or 0..1 of the input size with ``normalized: true``. Each
candidate keeps its best class; those scoring >= ``score_threshold`` go through NMS
(per class, or across classes with ``class_agnostic``) and the ``max_detections`` best
remain. A tensor whose shape does not fit the decoder is one InputError naming the
preset, the output and the shape.

The prediction: ``boxes`` (N, 4) float32 xyxy in the original image's pixels, ``scores``
(N,), ``classes`` (N,) int64, the index into the pack's ``classes`` (-1 when the model's
class is not one of them), and ``labels`` (N,) str, the model's class name of each box
(``class_names``, in output order; default: the pack's classes), which the
``coco-detection`` scorer matches with the ground truth's names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from edgegate.config import FieldProblem
from edgegate.errors import InputError
from edgegate.packs.adapters.base import GraphRunner, Prediction
from edgegate.packs.adapters.image import RESAMPLING, PixelOptions, declared_hw
from edgegate.packs.adapters.presets import (
    OptionError,
    Preset,
    PresetContext,
    check_dtype,
    ClassNamesOption,
    class_names,
    select_input,
    select_outputs,
)
from edgegate.packs.boxes import batched_nms, nms

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Colour = Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=3, max_length=3)]
OUTPUT_ROLES = {"yolo": ("predictions",), "ssd": ("boxes", "scores"), "decoded": ("boxes", "scores", "classes")}
# Options that mean something for some decoders only: setting one for another is a mistake.
DECODER_OPTIONS = {
    "yolo_layout": ("yolo",),
    "box_format": ("ssd", "decoded"),
    "background": ("ssd",),
    "score_activation": ("yolo", "ssd"),
}


class ObjectDetectionOptions(PixelOptions):
    decoder: Literal["yolo", "ssd", "decoded"] = Field(
        description="the output layout: yolo [1, 4+C, N]; ssd boxes + scores; decoded boxes, scores, classes")
    resize: Literal["letterbox", "stretch"] = Field(
        "letterbox", description="letterbox keeps the aspect ratio and pads; stretch resizes exactly")
    pad_color: Colour = Field(default_factory=lambda: [114, 114, 114], description="letterbox padding, RGB")
    outputs: list[str] | None = Field(
        None, description="graph outputs in the decoder's order (default: as declared)")
    yolo_layout: Literal["BCN", "BNC"] = Field("BCN", description="yolo: [1, 4+C, N] (BCN) or [1, N, 4+C] (BNC)")
    box_format: Literal["xyxy", "yxyx"] = Field("xyxy", description="ssd, decoded: the boxes' coordinate order")
    normalized: bool = Field(False, description="boxes are 0..1 of the input size, not input pixels")
    background: bool = Field(False, description="ssd: score column 0 is a background class")
    score_activation: Literal["none", "sigmoid", "softmax"] = Field(
        "none", description="yolo, ssd: applied to the class scores first")
    score_threshold: Unit = Field(0.25, description="detections scoring below this are dropped")
    nms_iou: Annotated[float, Field(gt=0.0, le=1.0)] | None = Field(
        0.7, description="NMS drops a box overlapping a better one above this IoU (null: no NMS)")
    class_agnostic: bool = Field(False, description="NMS across classes, not per class")
    max_detections: Annotated[int, Field(ge=1)] = Field(100, description="the best this many detections remain")
    class_names: ClassNamesOption = None

    @model_validator(mode="after")
    def _fits_decoder(self) -> ObjectDetectionOptions:
        for name, decoders in DECODER_OPTIONS.items():
            if name in self.model_fields_set and self.decoder not in decoders:
                raise FieldProblem(name, f"only for decoder {' or '.join(decoders)}, not {self.decoder}")
        if "pad_color" in self.model_fields_set and self.resize != "letterbox":
            raise FieldProblem("pad_color", "only for resize: letterbox")
        return self


@dataclass(frozen=True)
class Geometry:
    """Where the original image sits in the model input: ``(x - left) * sx`` maps back."""

    left: int
    top: int
    sx: float
    sy: float
    width: int  # of the original image
    height: int

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        out = np.empty_like(boxes, dtype=np.float64)
        out[:, 0::2] = (boxes[:, 0::2] - self.left) * self.sx
        out[:, 1::2] = (boxes[:, 1::2] - self.top) * self.sy
        out[:, 0::2] = out[:, 0::2].clip(0, self.width)
        out[:, 1::2] = out[:, 1::2].clip(0, self.height)
        return out


def letterbox(rgb: np.ndarray, height: int, width: int, colour: list[int], resample: Image.Resampling) -> tuple[np.ndarray, Geometry]:
    """ultralytics' LetterBox: scale to fit, centre, pad with ``colour``."""
    h0, w0 = rgb.shape[:2]
    r = min(height / h0, width / w0)
    nw, nh = max(round(w0 * r), 1), max(round(h0 * r), 1)
    left, top = round((width - nw) / 2 - 0.1), round((height - nh) / 2 - 0.1)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[...] = np.asarray(colour, dtype=np.uint8)
    canvas[top : top + nh, left : left + nw] = np.asarray(Image.fromarray(rgb).resize((nw, nh), resample))
    return canvas, Geometry(left, top, w0 / nw, h0 / nh, w0, h0)


def stretch(rgb: np.ndarray, height: int, width: int, resample: Image.Resampling) -> tuple[np.ndarray, Geometry]:
    h0, w0 = rgb.shape[:2]
    out = np.asarray(Image.fromarray(rgb).resize((width, height), resample))
    return out, Geometry(0, 0, w0 / width, h0 / height, w0, h0)


def _activate(scores: np.ndarray, how: str) -> np.ndarray:
    if how == "sigmoid":
        return 1.0 / (1.0 + np.exp(-scores))
    if how == "softmax":
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return scores


def _unbatch(arr: np.ndarray, rank: int) -> np.ndarray | None:
    """``arr`` without its batch axis of one ([1, ...] or already unbatched); None if neither."""
    if arr.ndim == rank + 1 and arr.shape[0] == 1:
        return arr[0]
    return arr if arr.ndim == rank else None


@dataclass(frozen=True)
class ObjectDetectionAdapter:
    """Image -> letterbox -> graph -> decode -> threshold, NMS -> boxes on the original image."""

    options: ObjectDetectionOptions
    graph: str
    input: str
    input_shape: tuple[int, ...]
    input_hw: tuple[int, int]
    output_indices: tuple[int, ...]
    output_names: tuple[str, ...]
    names: tuple[str, ...]  # the model's classes in output order
    pack_index: tuple[int, ...]  # per model class: its index in the pack's classes, or -1

    preset = "object-detection"

    def expected_inputs(self) -> dict[str, dict[str, tuple[int, ...]]]:
        return {self.graph: {self.input: self.input_shape}}

    def _layout_error(self, k: int, shape: tuple[int, ...], expected: str) -> InputError:
        return InputError(
            f"{self.preset} ({self.options.decoder}): graph output '{self.output_names[k]}' has shape "
            f"{list(shape)}; expected {expected} with C = {len(self.names)} classes (class_names)"
        )

    def decode(self, outs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes xyxy in model-input pixels, best score, model class) per candidate."""
        o, c = self.options, len(self.names)
        t = [np.asarray(outs[i], dtype=np.float64) for i in self.output_indices]
        if o.decoder == "yolo":
            want = "[1, 4+C, N]" if o.yolo_layout == "BCN" else "[1, N, 4+C]"
            p = _unbatch(t[0], 2)
            if p is not None and o.yolo_layout == "BCN":
                p = p.T
            if p is None or p.shape[1] != 4 + c:
                raise self._layout_error(0, t[0].shape, want)
            cx, cy, w, h = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
            class_scores = _activate(p[:, 4:], o.score_activation)
        else:
            boxes = _unbatch(t[0], 2)
            if boxes is None or boxes.shape[1] != 4:
                raise self._layout_error(0, t[0].shape, "boxes [1, N, 4]")
            n = len(boxes)
            if o.decoder == "ssd":
                columns = c + int(o.background)
                scores = _unbatch(t[1], 2)
                if scores is None or scores.shape != (n, columns):
                    bg = " (+1 background)" if o.background else ""
                    raise self._layout_error(1, t[1].shape, f"scores [1, {n}, C{bg}]")
                class_scores = _activate(scores, o.score_activation)[:, int(o.background):]
            else:
                scores, ids = _unbatch(t[1], 1), _unbatch(t[2], 1)
                if scores is None or scores.shape != (n,):
                    raise self._layout_error(1, t[1].shape, f"scores [1, {n}]")
                if ids is None or ids.shape != (n,):
                    raise self._layout_error(2, t[2].shape, f"class ids [1, {n}]")
                classes = np.rint(ids).astype(np.int64)
                bad = classes[(classes < 0) | (classes >= c)]
                if bad.size:
                    raise InputError(
                        f"{self.preset} (decoded): graph output '{self.output_names[2]}' holds class id "
                        f"{int(bad[0])}, but there are {c} class names (class_names)"
                    )
                class_scores = None
            if o.box_format == "yxyx":
                boxes = boxes[:, [1, 0, 3, 2]]
        if class_scores is not None:
            classes = np.argmax(class_scores, axis=1).astype(np.int64)
            scores = class_scores[np.arange(len(classes)), classes]
        if o.normalized:
            height, width = self.input_hw
            boxes = boxes * np.asarray([width, height, width, height], dtype=np.float64)
        return boxes, np.asarray(scores, dtype=np.float64), classes

    def predict(self, image: np.ndarray, run: GraphRunner) -> Prediction:
        o = self.options
        height, width = self.input_hw
        resample = RESAMPLING[o.interpolation]
        if o.resize == "letterbox":
            pixels, geometry = letterbox(image, height, width, o.pad_color, resample)
        else:
            pixels, geometry = stretch(image, height, width, resample)
        boxes, scores, classes = self.decode(run(self.graph, {self.input: o.to_tensor(pixels)}))
        keep = np.flatnonzero(scores >= o.score_threshold)
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        if o.nms_iou is not None:
            kept = nms(boxes, scores, o.nms_iou) if o.class_agnostic else batched_nms(boxes, scores, classes, o.nms_iou)
        else:
            kept = np.argsort(-scores, kind="stable")
        kept = kept[: o.max_detections]
        classes = classes[kept]
        return {
            "boxes": geometry.to_image(boxes[kept].reshape(-1, 4)).astype(np.float32),
            "scores": scores[kept].astype(np.float32),
            "classes": np.asarray([self.pack_index[k] for k in classes], dtype=np.int64),
            "labels": np.asarray([self.names[k] for k in classes], dtype=str),
        }


def build_object_detection(o: ObjectDetectionOptions, ctx: PresetContext) -> ObjectDetectionAdapter:
    g = ctx.graph(o)
    index, tensor = select_input(g, o.input)
    check_dtype(g, index, o.dtype)
    hw = declared_hw(g, index, o.layout)
    roles = OUTPUT_ROLES[o.decoder]
    outs = select_outputs(g, o.outputs, roles, "outputs")
    pack = list(ctx.pack_classes())
    names = class_names(o.class_names, ctx)
    if not names:
        raise OptionError("class_names", "the pack lists no classes: give the model's class names in output order")
    pack_index = tuple(pack.index(n) if n in pack else -1 for n in names)
    return ObjectDetectionAdapter(
        o, g.name, tensor.name, tensor.shape, hw, outs, tuple(g.outputs[i] for i in outs), names, pack_index
    )


PRESET = Preset(
    "object-detection", ObjectDetectionOptions, build_object_detection, "vision",
    "yolo / ssd / decoded outputs, letterbox, score threshold, NMS; boxes on the original image",
)
