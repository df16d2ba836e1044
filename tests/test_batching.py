"""Lockstep batching: the MTCNN cascade on the mini pack in a few rounds, same predictions."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from edgegate.packs.adapters import predict_sample
from edgegate.run.batching import LockstepRunner
from edgegate.packs.promptpack import load_promptpack
from edgegate.zoo import mtcnn

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini"


class CountingTarget:
    """A stand-in remote target: runs the MTCNN nets in torch, counts batch calls."""

    def __init__(self) -> None:
        self.nets = {"pnet": mtcnn.pnet(), "rnet": mtcnn.rnet(), "onet": mtcnn.onet()}
        self.batch_calls: list[tuple[str, int]] = []
        self.single_calls = 0
        self._lock = threading.Lock()

    def _forward(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feeds.values()
        with torch.no_grad():
            return [o.numpy() for o in self.nets[graph](torch.from_numpy(x))]

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            self.single_calls += 1
        return self._forward(graph, feeds)

    def run_batch(self, graph: str, feeds_list: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        with self._lock:
            self.batch_calls.append((graph, len(feeds_list)))
        return [self._forward(graph, f) for f in feeds_list]


@pytest.fixture(scope="module")
def cascade():
    pack = load_promptpack(PACK, verify=True)
    samples = pack.samples("eval")
    adapter = mtcnn.MTCNNAdapter(image_size=(120, 160), rnet_batch=16, onet_batch=4)
    return adapter, samples


def test_cascade_on_six_images_takes_a_few_rounds_and_same_predictions(cascade) -> None:
    adapter, samples = cascade
    assert len(samples) == 6
    target = CountingTarget()
    sequential = [predict_sample(adapter, s, target.run) for s in samples]
    per_call = target.single_calls

    counts: dict[str, int] = {}
    runner = LockstepRunner(target.run_batch, counts=counts)
    batched = runner.predict_all(adapter, samples)

    # Identical predictions: the batching changes when graphs run, not what they compute.
    assert len(batched) == len(sequential)
    for a, b in zip(batched, sequential):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    # Every per-sample call was made, and counted as the per-call runners count them.
    assert sum(counts.values()) == per_call
    # One batch call per graph per round; each graph in at most 3 rounds (P-Net once; R-Net and
    # O-Net once per fixed-size chunk of crops), not once per image.
    graphs_per_round = [set(r) for r in runner.rounds]
    for graph in ("pnet", "rnet", "onet"):
        rounds = sum(1 for r in graphs_per_round if graph in r)
        assert 1 <= rounds <= 3, (graph, runner.rounds)
    assert len(target.batch_calls) == sum(len(r) for r in runner.rounds)
    assert len(target.batch_calls) < per_call
    assert target.batch_calls[0] == ("pnet", 6)  # the first round: every image's P-Net at once


class _Toy:
    """A two-graph 'cascade' whose second stage runs only for some samples."""

    def predict_sample(self, sample: int, run) -> dict[str, np.ndarray]:
        (a,) = run("a", {"x": np.full((1,), sample, np.float32)})
        if sample % 2:
            (a,) = run("b", {"x": a})
        if sample == 99:
            raise ValueError("sample 99 is bad")
        return {"y": a}


def _double(graph: str, feeds_list):
    return [[f["x"] * 2] for f in feeds_list]


def test_uneven_paths_and_order() -> None:
    runner = LockstepRunner(_double)
    preds = runner.predict_all(_Toy(), list(range(5)))
    assert [float(p["y"][0]) for p in preds] == [0, 4, 4, 12, 8]
    assert runner.rounds == [{"a": 5}, {"b": 2}]


def test_group_size_splits_samples() -> None:
    runner = LockstepRunner(_double, group_size=2)
    preds = runner.predict_all(_Toy(), list(range(5)))
    assert [float(p["y"][0]) for p in preds] == [0, 4, 4, 12, 8]
    assert [r.get("a") for r in runner.rounds if "a" in r] == [2, 2, 1]


def test_adapter_error_reaches_the_caller() -> None:
    with pytest.raises(ValueError, match="sample 99 is bad"):
        LockstepRunner(_double).predict_all(_Toy(), [1, 99, 3])


def test_batch_error_reaches_the_caller_and_threads_end() -> None:
    def failing(graph: str, feeds_list):
        if graph == "b":
            raise RuntimeError("job j123 FAILED")
        return _double(graph, feeds_list)

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="j123"):
        LockstepRunner(failing).predict_all(_Toy(), list(range(6)))
    assert threading.active_count() <= before + 1


def test_single_call_outside_lockstep_is_a_batch_of_one() -> None:
    counts: dict[str, int] = {}
    runner = LockstepRunner(_double, counts=counts)
    assert float(runner("a", {"x": np.ones(1, np.float32)})[0][0]) == 2.0
    assert counts == {"a": 1} and runner.rounds == [{"a": 1}]
