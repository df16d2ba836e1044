"""Predictions spread over worker processes (``--jobs N``), merged in sample order.

Each worker loads the run's context once (pipeline, device, PromptPack, adapter), opens the
compiled graphs once, and predicts one contiguous slice of the samples; the slices are put
back together in sample order, so predictions, scores and stored per-sample records are
exactly those of a one-process run. Workers are spawned (never forked: torch and ONNX
Runtime hold threads), each with its share of the host's cores for OpenMP and torch on
one thread, as in the run itself (``RUN_TORCH_THREADS``).

The default number of workers comes from the host's cores and what one session uses
(``default_jobs``): the QNN HTP emulator runs 11 threads of its own and keeps about two cores
busy (a P-Net call: 1.6-1.8 s pinned to one core, 0.8-1.0 s on two), so a 2-core host gets
one worker and an 8-core host four. Timing never shares the machine with these workers:
they run after the benchmark, and are gone before the next step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

# Cores one session keeps busy, by target kind: the emulator about two (measured on a 2-core
# host, see above); ONNX Runtime on the CPU all of them (its intra-op pool is the host's
# size), so the CPU default is one process and more only when asked for.
CORES_PER_SESSION = {"qnn-emulator": 2}
# torch in a run does host glue on small tensors (crops, resizes, NMS) and the adversarial
# search's gradients through small graphs: one thread. Two threads made a 24x24 area resize
# 16x slower here (0.83 vs 0.05 ms: waking a pool costs more than the work) and fought ORT's
# and the emulator's threads; one thread also sums in the same order on every host, so the
# seeded search gives the same inputs on a 2-core CI runner and a 64-core workstation.
RUN_TORCH_THREADS = 1

_worker_state: dict[str, Any] = {}


def host_cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs(kind: str, samples: int) -> int:
    """Workers worth starting for `samples` samples on a target of `kind`: the host's cores
    over what one session uses, at most one per 8 samples; 1 for the CPU and remote targets."""
    per_session = CORES_PER_SESSION.get(kind)
    if per_session is None:
        return 1
    return max(1, min(host_cores() // per_session, samples // 8))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` while the block lasts (also a decorator:
    quantization runs on ``quantize.QUANTIZE_THREADS``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init(pipeline: str, device: str | None, home: str, threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(RUN_TORCH_THREADS)
    from edgegate.run.context import load_context

    _worker_state["ctx"] = load_context(pipeline, device=device, home=Path(home))


def _predict_slice(
    compiled: Mapping[str, Any], baseline: bool, split: str, ids: Sequence[str]
) -> tuple[list[Any], dict[str, int]]:
    from edgegate.packs.adapters import predict_sample
    from edgegate.run.runners import variant_runner

    ctx = _worker_state["ctx"]
    if "runner" not in _worker_state:  # the compiled graphs are opened once per worker
        counts: dict[str, int] = {}
        _worker_state["counts"] = counts
        target = ctx.baseline_target if baseline else ctx.target  # the FP32 baseline may run on the host CPU
        _worker_state["runner"] = variant_runner(target, compiled, counts=counts)
    by_id = {s.id: s for s in ctx.pack.samples(split)}
    counts = _worker_state["counts"]
    before = dict(counts)
    preds = [predict_sample(ctx.adapter, by_id[i], _worker_state["runner"]) for i in ids]
    return preds, {g: n - before.get(g, 0) for g, n in counts.items()}


def predict_in_workers(
    pipeline: str | Path,
    device: str | None,
    home: Path,
    compiled: Mapping[str, Any],
    slices: Sequence[tuple[str, Sequence[str]]],
    jobs: int,
    *,
    baseline: bool,
) -> tuple[list[list[Any]], dict[str, int]]:
    """Predictions of every (split, sample ids) slice, in the order given, computed by `jobs`
    spawned workers on the run's target (``baseline``: the FP32 baseline's target); and the
    graph calls they made, summed."""
    threads = max(1, host_cores() // jobs)
    ctx = get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init,
                               initargs=(str(pipeline), device, str(home), threads))
    try:
        futures = [pool.submit(_predict_slice, dict(compiled), baseline, split, list(ids)) for split, ids in slices]
        results = [f.result() for f in futures]
    except BaseException:  # a failed slice, Ctrl-C or SIGTERM: do not wait for the other slices
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        raise
    pool.shutdown()
    counts: dict[str, int] = {}
    for _, c in results:
        for g, n in c.items():
            counts[g] = counts.get(g, 0) + n
    return [p for p, _ in results], counts


def split_evenly(ids: Sequence[str], parts: int) -> list[list[str]]:
    """`ids` in `parts` contiguous slices of near-equal length (none empty)."""
    parts = max(1, min(parts, len(ids)))
    size, extra = divmod(len(ids), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(list(ids[start:end]))
        start = end
    return out
