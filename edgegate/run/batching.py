"""Lockstep batching: run many samples through an adapter at once, one batched call per graph.

An adapter calls its graphs one sample at a time, interleaved with host glue (MTCNN: P-Net,
NMS, R-Net on the crops, ...). A remote target such as AI Hub runs a whole dataset per job,
and a job costs minutes of queueing, so one job per graph call would be ruinous.

``LockstepRunner.predict_all`` runs each sample's ``predict_sample`` in its own thread. A
graph call blocks its thread. When every live thread is blocked (or finished), the pending
calls to the earliest graph (in the order graphs were first called) become one
``run_batch(graph, [feeds, ...])``; the outputs go back to their threads, which run on to
their next call, while calls to later graphs wait for the next rounds. A graph therefore
takes as many rounds as the most calls one sample makes to it (MTCNN: P-Net 1, R-Net and
O-Net one per fixed-size chunk of crops), not one call per sample.

The adapter code is the same code the local targets run, so it must not keep per-sample
state on the adapter object (the zoo adapters keep none).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgegate.packs.adapters import Adapter, Prediction, predict_sample
from edgegate.packs.sample import Sample

if TYPE_CHECKING:
    from edgegate.progress import Progress

# graph, [feeds of each call] -> [outputs of each call], in order
BatchRunner = Callable[[str, list[dict[str, np.ndarray]]], list[list[np.ndarray]]]


@dataclass
class _Call:
    graph: str
    feeds: dict[str, np.ndarray]
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None
    done: bool = False


class _Aborted(Exception):
    """Raised in a sample thread when the round loop gave up (another error, Ctrl-C)."""


@dataclass
class LockstepRunner:
    """A GraphRunner that batches the calls of many concurrently running samples."""

    run_batch: BatchRunner
    counts: dict[str, int] | None = None  # graph -> calls, as the per-call runners count them
    group_size: int = 256  # samples in lockstep at once (one thread each)
    rounds: list[dict[str, int]] = field(default_factory=list)  # per round: graph -> calls batched

    def __call__(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One call outside lockstep: a batch of one."""
        self._count(graph)
        self.rounds.append({graph: 1})
        return self.run_batch(graph, [dict(feeds)])[0]

    def _count(self, graph: str) -> None:
        if self.counts is not None:
            self.counts[graph] = self.counts.get(graph, 0) + 1

    def predict_all(
        self, adapter: Adapter, samples: Sequence[Sample], progress: Progress | None = None, what: str = "predict"
    ) -> list[Prediction]:
        """``predict_sample`` for every sample, in order, with graph calls batched per round."""
        out: list[Prediction] = []
        for start in range(0, len(samples), self.group_size):
            group = samples[start : start + self.group_size]
            if progress is not None and len(samples) > self.group_size:
                progress.info(f"{what}: samples {start + 1}-{start + len(group)} of {len(samples)}")
            out.extend(self._group(adapter, group))
        return out

    def _group(self, adapter: Adapter, samples: Sequence[Sample]) -> list[Prediction]:
        cond = threading.Condition()
        pending: list[_Call] = []
        state = {"live": len(samples), "aborted": False}
        results: list[Any] = [None] * len(samples)
        errors: list[BaseException | None] = [None] * len(samples)

        def call(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            c = _Call(graph, dict(feeds))
            with cond:
                if state["aborted"]:
                    raise _Aborted()
                self._count(graph)
                pending.append(c)
                cond.notify_all()
                while not c.done:
                    cond.wait()
            if c.error is not None:
                raise c.error
            assert c.outputs is not None
            return c.outputs

        def worker(i: int, sample: Sample) -> None:
            try:
                results[i] = predict_sample(adapter, sample, call)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors[i] = exc
            finally:
                with cond:
                    state["live"] -= 1
                    cond.notify_all()

        threads = [
            threading.Thread(target=worker, args=(i, s), name=f"lockstep-{i}", daemon=True)
            for i, s in enumerate(samples)
        ]
        for t in threads:
            t.start()
        try:
            self._rounds(cond, pending, state)
        except BaseException:
            with cond:  # release every waiting sample so its thread ends
                state["aborted"] = True
                for c in pending:
                    c.error, c.done = _Aborted(), True
                pending.clear()
                cond.notify_all()
            raise
        for t in threads:
            t.join()
        real = [e for e in errors if e is not None and not isinstance(e, _Aborted)]
        if real:
            raise real[0]
        return results

    def _rounds(self, cond: threading.Condition, pending: list[_Call], state: dict[str, Any]) -> None:
        order: dict[str, int] = {}  # graphs in the order they were first called
        while True:
            with cond:
                while len(pending) < state["live"]:
                    cond.wait()
                if not pending:  # every sample finished
                    return
                # Earliest graph first: calls to later graphs wait, so each graph's calls from
                # every sample land in as few rounds as the busiest sample needs.
                for c in pending:
                    order.setdefault(c.graph, len(order))
                graph = min(pending, key=lambda c: order[c.graph]).graph
                batch = [c for c in pending if c.graph == graph]
                pending[:] = [c for c in pending if c.graph != graph]
            self.rounds.append({graph: len(batch)})
            failure: BaseException | None = None
            try:
                outs = self.run_batch(graph, [c.feeds for c in batch])
                if len(outs) != len(batch):
                    raise RuntimeError(f"run_batch('{graph}') returned {len(outs)} outputs for {len(batch)} calls")
            except Exception as exc:  # noqa: BLE001 - each waiting sample re-raises it
                failure = exc
                for c in batch:
                    c.error = exc
            else:
                for c, o in zip(batch, outs):
                    c.outputs = list(o)
            with cond:
                for c in batch:
                    c.done = True
                if failure is not None:  # the samples still running stop at their next call
                    state["aborted"] = True
                    for c in pending:
                        c.error, c.done = _Aborted(), True
                    pending.clear()
                cond.notify_all()
