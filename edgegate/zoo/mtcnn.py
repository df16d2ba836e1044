"""MTCNN face cascade (P-Net, R-Net, O-Net) as three NPU graphs plus shared host glue.

The networks and their weights are in ``edgegate.zoo.mtcnn_nets`` (facenet-pytorch 2.6.0).

Faces are EdgeGate's person cue: the pipeline ``person_detect`` scores face boxes.

Fixed shapes, because a compiled NPU graph has fixed shapes:

* P-Net runs once per image on a *pyramid mosaic*: every pyramid level is placed on one
  canvas at even offsets (P-Net's stride is 2), and only output cells whose 12x12 window
  lies wholly inside one level are read. Those cells equal what P-Net computes on that
  level alone, so one graph of one shape replaces one graph per scale.
* R-Net and O-Net run on fixed batches of crops; a short last batch is padded with
  zeros and the padded rows are ignored.

The glue (pyramid, mosaic, NMS, box regression, crops) is numpy/torch-CPU code in this
module, shared by the FP32 baseline and the INT8 candidate, so only the graphs' numerics
differ between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate

# The networks; pipelines name their factories as edgegate.zoo.mtcnn:pnet (and rnet, onet).
from edgegate.zoo.mtcnn_nets import ONet, PNet, RNet, onet, pnet, rnet

__all__ = ["MTCNNAdapter", "ONet", "PNet", "RNet", "onet", "pnet", "rnet", "torch_runner"]

GraphRunner = Callable[[str, dict[str, np.ndarray]], list[np.ndarray]]

_CELL = 12  # P-Net window
_STRIDE = 2  # P-Net output stride


# ----------------------------------------------------------------------------- mosaic


@dataclass(frozen=True)
class Tile:
    """One pyramid level placed on the P-Net canvas."""

    scale: float
    y: int
    x: int
    h: int
    w: int


@dataclass(frozen=True)
class Mosaic:
    height: int
    width: int
    tiles: tuple[Tile, ...]


def _even(v: int) -> int:
    return v + (v % 2)


def pyramid_mosaic(
    image_h: int, image_w: int, min_face_size: float = 20.0, factor: float = 0.709
) -> Mosaic:
    """Shelf-pack MTCNN's scale pyramid for an image size onto one canvas.

    Levels are the ones facenet-pytorch uses (``12 / min_face_size * factor**k`` while
    the short side stays >= 12 px). Every tile starts at an even offset so P-Net cells
    inside a tile see exactly the pixels they would see on that level alone.
    """
    m = 12.0 / min_face_size
    minl = min(image_h, image_w) * m
    scales: list[float] = []
    s = m
    while minl >= _CELL:
        scales.append(s)
        s *= factor
        minl *= factor
    if not scales:
        raise ValueError(f"image {image_w}x{image_h} is smaller than one 12x12 P-Net window")
    sizes = [(int(image_h * sc + 1), int(image_w * sc + 1)) for sc in scales]
    gap = 2
    canvas_w = _even(sizes[0][1]) + gap + (_even(sizes[1][1]) if len(sizes) > 1 else 0)
    tiles: list[Tile] = []
    y = x = shelf_h = 0
    for sc, (h, w) in zip(scales, sizes):
        if x + w > canvas_w:
            y += _even(shelf_h) + gap
            x = shelf_h = 0
        tiles.append(Tile(sc, y, x, h, w))
        x += _even(w) + gap
        shelf_h = max(shelf_h, h)
    return Mosaic(_even(y + shelf_h), _even(canvas_w), tuple(tiles))


def _resample(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return interpolate(img, size=size, mode="area")


def _normalize(x: torch.Tensor) -> np.ndarray:
    return ((x - 127.5) * 0.0078125).numpy().astype(np.float32)


def build_mosaic(image: torch.Tensor, mosaic: Mosaic) -> np.ndarray:
    """Place every pyramid level of a (1,3,H,W) float image on the canvas (normalised)."""
    canvas = torch.full((1, 3, mosaic.height, mosaic.width), 127.5)
    for t in mosaic.tiles:
        canvas[:, :, t.y : t.y + t.h, t.x : t.x + t.w] = _resample(image, (t.h, t.w))
    return _normalize(canvas)


# ----------------------------------------------------------------------------- box glue


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy NMS (MTCNN's +1 pixel convention); returns kept indices, best first."""
    if boxes.size == 0:
        return np.zeros((0,), dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if method == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.copy()
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _crops(image: torch.Tensor, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resized, normalised crops of `boxes` (clipped to the image); returns (crops, kept idx)."""
    _, _, h, w = image.shape
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x1 = np.maximum(b[:, 0], 1)
    y1 = np.maximum(b[:, 1], 1)
    x2 = np.minimum(b[:, 2], w)
    y2 = np.minimum(b[:, 3], h)
    out, kept = [], []
    for k in range(len(b)):
        if y2[k] > y1[k] - 1 and x2[k] > x1[k] - 1:
            patch = image[:, :, y1[k] - 1 : y2[k], x1[k] - 1 : x2[k]]
            out.append(_resample(patch, (size, size)))
            kept.append(k)
    if not out:
        return np.zeros((0, 3, size, size), np.float32), np.zeros((0,), np.int64)
    return _normalize(torch.cat(out, 0)), np.asarray(kept, np.int64)


def _run_batched(
    run: GraphRunner, graph: str, input_name: str, batch: int, data: np.ndarray
) -> list[np.ndarray]:
    """Run a fixed-batch graph over `data`, padding the last batch with zeros."""
    outs: list[list[np.ndarray]] = []
    for start in range(0, len(data), batch):
        chunk = data[start : start + batch]
        n = len(chunk)
        if n < batch:
            pad = np.zeros((batch - n, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad], 0)
        res = run(graph, {input_name: chunk})
        outs.append([r[:n] for r in res])
    return [np.concatenate(parts, 0) for parts in zip(*outs)]


# ----------------------------------------------------------------------------- adapter


class MTCNNAdapter:
    """Host glue for the three-graph MTCNN cascade: image in, face boxes out.

    ``graphs`` maps the role (pnet/rnet/onet) to the graph names of the pipeline, whose
    declared input shapes must match what this adapter feeds.
    """

    graph_names = ("pnet", "rnet", "onet")

    def __init__(
        self,
        *,
        image_size: Sequence[int] = (120, 160),
        min_face_size: float = 20.0,
        factor: float = 0.709,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        rnet_batch: int = 32,
        onet_batch: int = 8,
    ) -> None:
        self.image_h, self.image_w = int(image_size[0]), int(image_size[1])
        self.min_face_size = float(min_face_size)
        self.factor = float(factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.rnet_batch = int(rnet_batch)
        self.onet_batch = int(onet_batch)
        self.mosaic = pyramid_mosaic(self.image_h, self.image_w, self.min_face_size, self.factor)

    def expected_inputs(self) -> dict[str, dict[str, tuple[int, ...]]]:
        """Input name -> shape for each graph, for checking the pipeline's declarations."""
        return {
            "pnet": {"image": (1, 3, self.mosaic.height, self.mosaic.width)},
            "rnet": {"crops": (self.rnet_batch, 3, 24, 24)},
            "onet": {"crops": (self.onet_batch, 3, 48, 48)},
        }

    def describe(self) -> dict[str, Any]:
        return {
            "image_size": [self.image_h, self.image_w],
            "min_face_size": self.min_face_size,
            "factor": self.factor,
            "thresholds": list(self.thresholds),
            "pyramid_levels": len(self.mosaic.tiles),
        }

    # The three stages, each a pure function of its inputs and the graph outputs.

    def _stage1(self, run: GraphRunner, image: torch.Tensor) -> np.ndarray:
        canvas = build_mosaic(image, self.mosaic)
        prob, reg = run("pnet", {"image": canvas})[:2]
        score_map = prob[0, 1]
        candidates = []
        for t in self.mosaic.tiles:
            # cells whose 12x12 window lies wholly inside this tile
            i0, j0 = t.y // _STRIDE, t.x // _STRIDE
            ni = (t.h - _CELL) // _STRIDE + 1
            nj = (t.w - _CELL) // _STRIDE + 1
            if ni <= 0 or nj <= 0:
                continue
            s = score_map[i0 : i0 + ni, j0 : j0 + nj]
            r = reg[0, :, i0 : i0 + ni, j0 : j0 + nj]
            ii, jj = np.nonzero(s >= self.thresholds[0])
            if ii.size == 0:
                continue
            q1x = np.floor((_STRIDE * jj + 1) / t.scale)
            q1y = np.floor((_STRIDE * ii + 1) / t.scale)
            q2x = np.floor((_STRIDE * jj + _CELL) / t.scale)
            q2y = np.floor((_STRIDE * ii + _CELL) / t.scale)
            boxes = np.stack(
                [q1x, q1y, q2x, q2y, s[ii, jj], r[0, ii, jj], r[1, ii, jj], r[2, ii, jj], r[3, ii, jj]],
                axis=1,
            ).astype(np.float32)
            keep = nms(boxes[:, :4], boxes[:, 4], 0.5)
            candidates.append(boxes[keep])
        if not candidates:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(candidates, 0)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        refined = np.stack(
            [
                boxes[:, 0] + boxes[:, 5] * w,
                boxes[:, 1] + boxes[:, 6] * h,
                boxes[:, 2] + boxes[:, 7] * w,
                boxes[:, 3] + boxes[:, 8] * h,
                boxes[:, 4],
            ],
            axis=1,
        )
        return _square(refined)

    def _score_crops(
        self, run: GraphRunner, image: torch.Tensor, boxes: np.ndarray, stage: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """R-Net (stage 1) or O-Net (stage 2) on the boxes' crops: the boxes above the stage's
        threshold with their scores (N x 5), and their box regressions; None without crops."""
        size, graph, batch = (24, "rnet", self.rnet_batch) if stage == 1 else (48, "onet", self.onet_batch)
        crops, kept = _crops(image, boxes, size)
        if len(kept) == 0:
            return None
        boxes = boxes[kept]
        prob, reg = _run_batched(run, graph, "crops", batch, crops)[:2]
        score = prob[:, 1]
        ok = score > self.thresholds[stage]
        return np.concatenate([boxes[ok, :4], score[ok, None]], 1), reg[ok]

    def _stage2(self, run: GraphRunner, image: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
        scored = self._score_crops(run, image, boxes, 1)
        if scored is None:
            return np.zeros((0, 5), np.float32)
        boxes, reg = scored
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return _square(_bbreg(boxes[keep], reg[keep]))

    def _stage3(self, run: GraphRunner, image: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
        scored = self._score_crops(run, image, boxes, 2)
        if scored is None:
            return np.zeros((0, 5), np.float32)
        boxes, reg = scored
        boxes = _bbreg(boxes, reg)
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7, method="min")
        return boxes[keep]

    def disagree(self, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
        """Predictions differ: a face found by one and not paired (IoU >= 0.5) in the other."""
        return _disagree(a, b)

    def decision_margin(self, x: torch.Tensor, modules: dict[str, nn.Module]) -> torch.Tensor:
        """Differentiable distance of the FP32 cascade from flipping a decision on image x
        (1x3xHxW, 0..255): O-Net's face probability against its threshold on the crops
        R-Net passes, or P-Net's best cell against its threshold when nothing gets that far."""
        run = torch_runner(modules)
        img = x.detach()
        boxes = self._stage1(run, img)
        if len(boxes):
            boxes = self._stage2(run, img, boxes)
        _, _, h, w = x.shape
        if len(boxes):
            b = np.trunc(boxes[:, :4]).astype(np.int64)
            crops = []
            for x1, y1, x2, y2 in b:
                x1, y1, x2, y2 = max(int(x1), 1), max(int(y1), 1), min(int(x2), w), min(int(y2), h)
                if y2 > y1 and x2 > x1:
                    crops.append(_resample(x[:, :, y1 - 1 : y2, x1 - 1 : x2], (48, 48)))
            if crops:
                prob = modules["onet"]((torch.cat(crops, 0) - 127.5) * 0.0078125)[0][:, 1]
                return (prob - self.thresholds[2]).abs().mean()
        t = self.mosaic.tiles[0]
        level = (_resample(x, (t.h, t.w)) - 127.5) * 0.0078125
        prob = modules["pnet"](level)[0][0, 1]
        return (prob.max() - self.thresholds[0]).abs()

    def predict(self, image: np.ndarray, run: GraphRunner) -> dict[str, np.ndarray]:
        """Detect faces in an HxWx3 uint8 RGB image; `run(graph, feeds)` executes a graph."""
        if image.shape[:2] != (self.image_h, self.image_w):
            raise ValueError(
                f"image is {image.shape[1]}x{image.shape[0]}, the cascade was built for "
                f"{self.image_w}x{self.image_h}"
            )
        img = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float()
        boxes = self._stage1(run, img)
        if len(boxes):
            boxes = self._stage2(run, img, boxes)
        if len(boxes):
            boxes = self._stage3(run, img, boxes)
        return {
            "boxes": boxes[:, :4].astype(np.float32).reshape(-1, 4),
            "scores": boxes[:, 4].astype(np.float32).reshape(-1),
        }


def torch_runner(modules: dict[str, nn.Module]) -> GraphRunner:
    """Run the cascade's graphs as torch modules (FP32 reference, adversarial search)."""

    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = modules[graph](*[torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])
        return [o.numpy() for o in out]

    return run


def _disagree(a: dict[str, np.ndarray], b: dict[str, np.ndarray], iou: float = 0.5) -> bool:
    """Two detection sets disagree unless their boxes pair up one to one at IoU >= `iou`."""
    from edgegate.packs.scorers import iou_matrix

    ba, bb = np.asarray(a["boxes"]).reshape(-1, 4), np.asarray(b["boxes"]).reshape(-1, 4)
    if len(ba) != len(bb):
        return True
    if len(ba) == 0:
        return False
    m = iou_matrix(ba, bb)
    used: set[int] = set()
    for i in np.argsort(-m.max(axis=1)):
        j = next((int(j) for j in np.argsort(-m[i]) if int(j) not in used and m[i, j] >= iou), None)
        if j is None:
            return True
        used.add(j)
    return False


def mosaic_canvas_shape(image_h: int, image_w: int, min_face_size: float = 20.0) -> tuple[int, int]:
    """Convenience for writing pipeline YAML: the P-Net input (H, W) for an image size."""
    m = pyramid_mosaic(image_h, image_w, min_face_size)
    return m.height, m.width


__all__ = [
    "MTCNNAdapter",
    "PNet",
    "RNet",
    "ONet",
    "pnet",
    "rnet",
    "onet",
    "pyramid_mosaic",
    "mosaic_canvas_shape",
    "torch_runner",
    "nms",
]
