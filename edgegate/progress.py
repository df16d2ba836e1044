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
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TimeElapsedColumn

            with RichProgress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=self._console, transient=True,
            ) as bar:
                task = bar.add_task(description, total=len(items))
                for item in items:
                    yield item
                    bar.advance(task)
            return
        step = max(1, len(items) // 4)
        for i, item in enumerate(items, 1):
            yield item
            if i % step == 0 or i == len(items):
                print(f"edgegate: {description}: {i}/{len(items)}", file=sys.stderr, flush=True)
