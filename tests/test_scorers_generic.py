"""The generic scorers: classification, coco-detection, text-classification, checked
against hand-computed cases (and pycocotools, when it is importable)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgegate.metrics import Direction, MetricKind, get_metric
from edgegate.packs.coco_eval import CocoDetectionScorer
from edgegate.packs.sample import Sample
from edgegate.packs.scorers import get_scorer

NAMES = ["a", "b", "c", "d", "e", "f"]


def sample(i: int, target: dict[str, Any] | None = None, text: str | None = None) -> Sample:
    image = None if text is not None else Path(f"/pack/img{i}.png")
    return Sample(f"s{i}", "eval", image, target or {}, f"{i:064d}", text)


def logits(v: list[float], output: str = "logits") -> dict[str, Any]:
    arr = np.asarray(v, np.float32)
    top = [NAMES[k] for k in np.argsort(-arr, kind="stable")[:5]]
    return {"logits": arr, "output": np.asarray(output), "top_labels": np.asarray(top)}


def softmax(v: list[float]) -> np.ndarray:
    e = np.exp(np.asarray(v, np.float64) - max(v))
    return e / e.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)))


def test_generic_scorers_and_metrics_are_registered() -> None:
    for name in ("classification", "coco-detection", "text-classification"):
        assert get_scorer(name).name == name
    expected = {
        "top1_accuracy": (Direction.HIGHER, "ratio"), "top5_accuracy": (Direction.HIGHER, "ratio"),
        "top1_agreement": (Direction.HIGHER, "ratio"), "mean_kl": (Direction.LOWER, "nats"),
        "output_cosine": (Direction.HIGHER, "ratio"), "map50_95": (Direction.HIGHER, "ratio"),
        "detection_agreement": (Direction.HIGHER, "ratio"), "map50": (Direction.HIGHER, "ratio"),
    }
    for name, (direction, unit) in expected.items():
        m = get_metric(name)
        assert (m.direction, m.unit, m.kind) == (direction, unit, MetricKind.QUALITY), name
    for scorer in ("classification", "coco-detection", "text-classification"):
        for metric in get_scorer(scorer).metrics:
            get_metric(metric)


# ----------------------------------------------------------------------------- classification


def test_classification_hand_computed() -> None:
    sc = get_scorer("classification")
    samples = [sample(0, {"label": "a"}), sample(1, {"label": "b"}), sample(2)]
    cand = [logits([5, 1, 0, 0, 0, 0]), logits([3, 2, 0, 0, 0, 0]), logits([0, 0, 1, 0, 0, 0])]
    ref = [logits([5, 1, 0, 0, 0, 0]), logits([2, 3, 0, 0, 0, 0]), logits([0, 0, 1, 0, 0, 0])]
    result = sc.score(cand, samples, ref)
    m = result.metrics
    assert m["top1_accuracy"] == 0.5 and m["top5_accuracy"] == 1.0
    assert m["top1_agreement"] == pytest.approx(2 / 3)
    want_kl = kl(softmax([2, 3, 0, 0, 0, 0]), softmax([3, 2, 0, 0, 0, 0])) / 3
    assert m["mean_kl"] == pytest.approx(want_kl, rel=1e-9)
    cos = (6 + 6) / (math.sqrt(13) * math.sqrt(13))
    assert m["output_cosine"] == pytest.approx((1 + cos + 1) / 3)
    json.dumps(result.per_sample)
    assert sc.aggregate(result.per_sample[1:2]) == sc.score(cand[1:2], samples[1:2], ref[1:2]).metrics


def test_classification_without_labels_or_reference() -> None:
    sc = get_scorer("classification")
    samples = [sample(0), sample(1)]
    preds = [{"logits": np.array([1.0, 2.0])}, {"logits": np.array([3.0, 0.0])}]  # no names needed
    assert sc.score(preds, samples).metrics == {}
    m = sc.score(preds, samples, preds).metrics
    assert m == {"top1_agreement": 1.0, "mean_kl": 0.0, "output_cosine": pytest.approx(1.0)}
    assert set(m) <= set(sc.metrics)


def test_classification_probabilities_are_used_as_given() -> None:
    sc = get_scorer("classification")
    cand = [logits([0.9, 0.1], output="probabilities")]
    ref = [logits([0.5, 0.5], output="probabilities")]
    m = sc.score(cand, [sample(0)], ref).metrics
    assert m["mean_kl"] == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    zero = [logits([1.0, 0.0], output="probabilities")]
    assert math.isfinite(sc.score(zero, [sample(0)], ref).metrics["mean_kl"])  # floored, not infinite
    with pytest.raises(ValueError, match="the reference's 'output' is not 'probabilities'"):
        sc.score(cand, [sample(0)], [logits([0.5, 0.5])])


def test_classification_labelled_sample_needs_class_names() -> None:
    with pytest.raises(ValueError, match=r"prediction 0 \(s0\): the sample is labelled but .* no 'top_labels'"):
        get_scorer("classification").score([{"logits": np.ones(3)}], [sample(0, {"label": "a"})])


# ----------------------------------------------------------------------------- coco-detection


def det(boxes: list[list[float]], scores: list[float], labels: list[str]) -> dict[str, Any]:
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels, dtype=str)}


def gt(i: int, boxes: list[list[float]], labels: list[str]) -> Sample:
    return sample(i, {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": labels})


def test_coco_ap_of_one_class_hand_computed() -> None:
    # TP 0.9, FP 0.8, TP 0.7 on two ground-truth boxes: precision 1 up to recall 0.5 (51 of
    # the 101 recall points), then 2/3 up to recall 1 (50 points); exact boxes, so the same
    # at every IoU threshold.
    s = [gt(0, [[0, 0, 10, 10], [20, 20, 30, 30]], ["cat", "cat"])]
    p = [det([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0.9, 0.8, 0.7], ["cat"] * 3)]
    m = get_scorer("coco-detection").score(p, s).metrics
    want = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert m["map50"] == pytest.approx(want) and m["map50_95"] == pytest.approx(want)
    assert "detection_agreement" not in m


def test_coco_iou_thresholds() -> None:
    # IoU 0.62: a true positive at 0.50, 0.55 and 0.60, a false positive at 0.65 .. 0.95
    s = [gt(0, [[0, 0, 100, 100]], ["cat"])]
    p = [det([[0, 0, 100, 62]], [0.9], ["cat"])]
    m = get_scorer("coco-detection").score(p, s).metrics
    assert m["map50"] == pytest.approx(1.0) and m["map50_95"] == pytest.approx(0.3)


def test_coco_ranks_across_images_and_averages_classes() -> None:
    s = [gt(0, [[0, 0, 10, 10]], ["cat"]), gt(1, [[0, 0, 10, 10], [40, 40, 50, 50]], ["cat", "dog"])]
    p = [
        det([[0, 0, 10, 10]], [0.6], ["cat"]),
        det([[70, 70, 80, 80], [0, 0, 10, 10], [5, 5, 9, 9]], [0.9, 0.3, 0.8], ["cat", "cat", "bird"]),
    ]
    result = get_scorer("coco-detection").score(p, s)
    # cat: FP 0.9, TP 0.6, TP 0.3 -> precision 2/3 at every recall point; dog: no detection -> 0;
    # bird has no ground truth and is left out
    assert result.extra["per_class_ap"] == {
        "cat": {"ap50": pytest.approx(2 / 3), "ap50_95": pytest.approx(2 / 3), "n_gt": 2},
        "dog": {"ap50": 0.0, "ap50_95": 0.0, "n_gt": 1},
    }
    assert result.metrics["map50"] == pytest.approx(1 / 3)
    json.dumps(result.per_sample), json.dumps(result.extra)
    sc = get_scorer("coco-detection")
    assert sc.aggregate(result.per_sample[:1]) == sc.score(p[:1], s[:1]).metrics


def test_coco_keeps_100_detections_per_image_and_class() -> None:
    s = [gt(0, [[0, 0, 10, 10]], ["cat"])]
    boxes = [[50 + i, 50, 60 + i, 60] for i in range(100)] + [[0, 0, 10, 10]]
    p = [det(boxes, [0.9] * 100 + [0.1], ["cat"] * 101)]
    assert get_scorer("coco-detection").score(p, s).metrics["map50"] == 0.0


def test_coco_no_ground_truth_has_no_map() -> None:
    m = get_scorer("coco-detection").score([det([], [], [])], [gt(0, [], [])]).metrics
    assert m == {}


def test_detection_agreement() -> None:
    s = [gt(i, [], []) for i in range(4)]
    cand = [
        det([[0, 0, 10, 10]], [0.9], ["cat"]),
        det([[0, 0, 10, 10]], [0.9], ["cat"]),
        det([[0, 0, 10, 10]], [0.9], ["dog"]),
        det([], [], []),
    ]
    ref = [
        det([[1, 0, 10, 10]], [0.8], ["cat"]),   # IoU 0.9, same class: agrees
        det([[6, 0, 16, 10]], [0.9], ["cat"]),   # IoU 0.25
        det([[0, 0, 10, 10]], [0.9], ["cat"]),   # another class
        det([], [], []),                          # nothing either side: agrees
    ]
    m = get_scorer("coco-detection").score(cand, s, ref).metrics
    assert m == {"detection_agreement": 0.5}


def test_coco_prediction_needs_labels() -> None:
    with pytest.raises(ValueError, match="needs 'boxes', 'scores' and 'labels'"):
        get_scorer("coco-detection").score([{"boxes": np.zeros((0, 4)), "scores": np.zeros(0)}], [gt(0, [], [])])


@pytest.mark.parametrize(("seed", "jitter"), [(3, 4.0), (5, 1.0)])
def test_coco_matches_pycocotools(seed: int, jitter: float) -> None:
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(seed)
    classes = ["cat", "dog", "bird"]
    samples, preds, images, annotations, results = [], [], [], [], []
    for i in range(12):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, size=(n, 2))
        wh = rng.uniform(5, 40, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = [classes[k] for k in rng.integers(0, 3, size=n)]
        samples.append(gt(i, boxes.tolist(), labels))
        images.append({"id": i, "width": 128, "height": 128})
        for b, label in zip(boxes, labels):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": classes.index(label) + 1,
                                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": float((b[2] - b[0]) * (b[3] - b[1])),
                                "iscrowd": 0})
        # detections: jittered copies of the ground truth (some relabelled) plus clutter
        moved = boxes + rng.normal(0, jitter, size=boxes.shape)
        clutter_xy = rng.uniform(0, 80, size=(3, 2))
        d_boxes = np.concatenate([moved, np.concatenate([clutter_xy, clutter_xy + 20], axis=1)])
        d_labels = labels + [classes[k] for k in rng.integers(0, 3, size=3)]
        d_labels = [classes[rng.integers(0, 3)] if rng.random() < 0.2 else lab for lab in d_labels]
        d_scores = rng.uniform(0.05, 1.0, size=len(d_boxes))
        preds.append(det(d_boxes.tolist(), d_scores.tolist(), d_labels))
        for b, sc, label in zip(d_boxes.astype(np.float32), d_scores.astype(np.float32), d_labels):
            results.append({"image_id": i, "category_id": classes.index(label) + 1,
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                            "score": float(sc)})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(results), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    m = get_scorer("coco-detection").score(preds, samples).metrics
    assert m["map50_95"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert m["map50"] == pytest.approx(ev.stats[1], abs=1e-6)


def test_coco_scorer_is_the_registered_one() -> None:
    assert isinstance(get_scorer("coco-detection"), CocoDetectionScorer)


# ----------------------------------------------------------------------------- text-classification


def text(i: int, label: str | None = None) -> Sample:
    return sample(i, {"label": label} if label else {}, text=f"text {i}")


def head(top: list[str], v: list[float]) -> dict[str, Any]:
    return {"logits": np.asarray(v, np.float32), "top_labels": np.asarray(top)}


def test_text_classification_head_hand_computed() -> None:
    sc = get_scorer("text-classification")
    samples = [text(0, "go"), text(1, "stop"), text(2, "stop"), text(3)]
    preds = [head(["go", "stop"], [2, 1]), head(["stop", "go"], [0, 3]), head(["go", "stop"], [1, 0]),
             head(["go", "stop"], [1, 0])]
    m = sc.score(preds, samples, preds).metrics
    assert m["accuracy"] == pytest.approx(2 / 3)
    # go: TP 1, FP 1, FN 0 -> F1 2/3; stop: TP 1, FP 0, FN 1 -> F1 2/3
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["precision[go]"] == 0.5 and m["recall[stop]"] == 0.5
    assert m["cosine_agreement"] == pytest.approx(1.0)


def test_text_classification_embeddings_by_support_centroid() -> None:
    sc = get_scorer("text-classification")
    support = ([{"embedding": np.array(v, np.float32)} for v in ([1, 0], [0.9, 0.1], [0, 1])],
               [text(10, "x"), text(11, "x"), text(12, "y")])
    samples = [text(0, "x"), text(1, "x")]
    preds = [{"embedding": np.array([0.8, 0.2])}, {"embedding": np.array([0.1, 0.9])}]
    ref = [{"embedding": np.array([0.8, 0.2])}, {"embedding": np.array([0.9, 0.1])}]
    result = sc.score(preds, samples, ref, support=support)
    assert [r["predicted"] for r in result.per_sample] == ["x", "y"]
    cos = (0.09 + 0.09) / (math.hypot(0.1, 0.9) * math.hypot(0.9, 0.1))
    assert result.metrics["accuracy"] == 0.5
    assert result.metrics["cosine_agreement"] == pytest.approx((1 + cos) / 2)
    with pytest.raises(ValueError, match="set evaluation.support_split"):
        sc.score(preds, samples)


def test_text_classification_unlabelled_scores_agreement_only() -> None:
    sc = get_scorer("text-classification")
    preds = [{"embedding": np.array([1.0, 0.0])}]
    assert sc.score(preds, [text(0)]).metrics == {}
    assert sc.score(preds, [text(0)], [{"embedding": np.array([1.0, 1.0])}]).metrics == {
        "cosine_agreement": pytest.approx(math.sqrt(0.5))
    }
