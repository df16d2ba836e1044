"""Graph runners: how an adapter's graph calls reach ONNX Runtime or a target.

A ``GraphRunner`` is ``run(graph, feeds) -> outputs``; the adapter calls it once per graph
call. A runner that can also predict a whole split at once, batching the graph calls of
many samples (``edgegate.run.batching.LockstepRunner`` for remote targets), declares it by
being a ``BatchPredictor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from edgegate.packs.adapters import Adapter, GraphRunner, Prediction, predict_sample
from edgegate.run.batching import LockstepRunner
from edgegate.targets.base import CompiledGraph, Target

if TYPE_CHECKING:
    from edgegate.packs.sample import Sample
    from edgegate.progress import Progress
    from edgegate.run.models import GraphSource

# graph -> every batch of inputs (in the graph's input order) it was fed
GraphInputs = dict[str, list[tuple[np.ndarray, ...]]]
# graph -> input name -> array: one call's feeds for every graph
GraphFeeds = dict[str, dict[str, np.ndarray]]


@runtime_checkable
class BatchPredictor(Protocol):
    """A runner that predicts many samples at once (one batched job per graph and round)."""

    def __call__(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def predict_all(
        self, adapter: Adapter, samples: Sequence[Sample], progress: Progress | None = None, what: str = "predict"
    ) -> list[Prediction]: ...


def _counting(counts: dict[str, int] | None, graph: str) -> None:
    if counts is not None:
        counts[graph] = counts.get(graph, 0) + 1


def cpu_runner(onnx_paths: Mapping[str, Path], *, counts: dict[str, int] | None = None) -> GraphRunner:
    """Run FP32 ONNX graphs in this process with ONNX Runtime on the CPU."""
    from edgegate.targets.ort_runtime import open_session

    sessions = {g: open_session(str(p), "cpu", {}, spin=False) for g, p in onnx_paths.items()}

    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        _counting(counts, graph)
        return sessions[graph].run(None, feeds)

    return run


def target_runner(
    target: Target, compiled: Mapping[str, CompiledGraph], *, counts: dict[str, int] | None = None
) -> GraphRunner:
    """Run compiled graphs one call at a time through sessions the target opens."""
    sessions = {g: target.open(c) for g, c in compiled.items()}

    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        _counting(counts, graph)
        return sessions[graph].run(feeds)

    return run


def variant_runner(
    target: Target, compiled: Mapping[str, CompiledGraph], *, counts: dict[str, int] | None = None
) -> GraphRunner:
    """The runner a variant is evaluated with: lockstep batches where the target runs many
    calls as one job (``batches_calls``: one job per graph per round, not one per call),
    else one session call per graph call."""
    if target.batches_calls:
        return LockstepRunner(lambda g, fl: target.run_batch(compiled[g], fl), counts=counts)
    return target_runner(target, compiled, counts=counts)


def recording_runner(inner: GraphRunner, record: GraphInputs) -> GraphRunner:
    """`inner`, keeping a copy of every batch each graph is fed in `record`."""

    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        record.setdefault(graph, []).append(tuple(np.array(v, copy=True) for v in feeds.values()))
        return inner(graph, feeds)

    return run


def collect_graph_inputs(
    adapter: Adapter, runner: GraphRunner, samples: Sequence[Sample], progress: Progress, what: str
) -> GraphInputs:
    """Run the FP32 cascade over samples and keep every batch each graph was fed."""
    record: GraphInputs = {}
    rec = recording_runner(runner, record)
    for s in progress.iterate(samples, what):
        predict_sample(adapter, s, rec)
    return record


def benchmark_feeds(
    adapter: Adapter, graphs: Sequence[GraphSource], runner: GraphRunner, samples: Sequence[Sample]
) -> GraphFeeds:
    """A real input for every graph: the first batch each graph sees on the eval split."""
    feeds: GraphFeeds = {}
    record: GraphInputs = {}
    rec = recording_runner(runner, record)
    names = {g.name: g.input_names for g in graphs}
    for s in samples:
        predict_sample(adapter, s, rec)
        if all(record.get(g) for g in names):
            break
    for g, inputs in names.items():
        if not record.get(g):
            # No eval image reached this graph: time it on zeros of its declared shape.
            src = next(x for x in graphs if x.name == g)
            feeds[g] = {n: np.zeros(s, np.dtype(src.dtype_of(i)))
                        for i, (n, s) in enumerate(zip(src.input_names, src.input_shapes))}
        else:
            feeds[g] = dict(zip(inputs, record[g][0]))
    return feeds
