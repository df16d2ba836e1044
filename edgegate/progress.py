"""User-facing progress on stderr: rich bars on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")
log = logging.getLogger("edgegate")


class Progress:
    """Stage headers and per-item progress. ``quiet`` turns everything off."""

    def __init__(self, *, quiet: bool = False, force_plain: bool = False) -> None:
        self.quiet = quiet
        self.rich = (not force_plain) and sys.stderr.isatty()
        self._console = None
        if self.rich and not quiet:
            from rich.console import Console

            self._console = Console(stderr=True)

    def info(self, message: str) -> None:
        if self.quiet:
            return
        if self._console is not None:
            self._console.print(f"[dim]•[/dim] {message}", highlight=False)
        else:
            print(f"edgegate: {message}", file=sys.stderr, flush=True)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self.info(f"{name} ...")
        yield
        self.info(f"{name} done ({time.perf_counter() - t0:.1f} s)")

    def iterate(self, items: Sequence[T], description: str) -> Iterable[T]:
        if self.quiet or not items:
            yield from items
            return
        if self._console is not None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress as RichProgress,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            with RichProgress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), "ETA", TimeRemainingColumn(), console=self._console, transient=True,
            ) as bar:
                task = bar.add_task(description, total=len(items))
                for item in items:
                    yield item
                    bar.advance(task)
            return
        step = max(1, len(items) // 4)
        t0 = time.perf_counter()
        for i, item in enumerate(items, 1):
            yield item
            if i % step == 0 or i == len(items):
                print(f"edgegate: {description}: {i}/{len(items)}{eta_text(time.perf_counter() - t0, i, len(items))}",
                      file=sys.stderr, flush=True)


def eta_text(elapsed_s: float, done: int, total: int) -> str:
    """`` (12 s, ETA 36 s)`` after `done` of `total` items in `elapsed_s`; nothing when done."""
    if done >= total or done == 0:
        return f" ({elapsed_s:.0f} s)" if done else ""
    return f" ({elapsed_s:.0f} s, ETA {elapsed_s / done * (total - done):.0f} s)"


def wall_time_text(seconds: float) -> str:
    """``2 min 31 s`` (or ``48.2 s`` under a minute)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, sec = divmod(round(seconds), 60)
    return f"{m} min {sec} s"
