"""Progress bars on a terminal, plain periodic log lines elsewhere (CI logs, pipes)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class _Reporter:
    def __init__(self, progress: Progress | None, task: int | None, description: str, total: int) -> None:
        self._progress, self._task = progress, task
        self._description, self._total = description, total
        self._done, self._last = 0, time.monotonic()

    def advance(self, steps: int = 1, status: str = "") -> None:
        self._done += steps
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, status=status)
        elif self._total > 0 and (time.monotonic() - self._last > 30 or self._done == self._total):
            self._last = time.monotonic()
            print(f"{self._description}: {self._done}/{self._total} {status}", file=sys.stderr, flush=True)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[_Reporter]:
    """A rich bar when stderr is a terminal; otherwise a line at most every 30 s and at the end.

    ``enabled=False`` silences it entirely (library use inside a larger loop).
    """
    if enabled and sys.stderr.isatty():
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        )
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task(description, total=total, status="")
            yield _Reporter(progress, task, description, total)
    else:
        yield _Reporter(None, None, description, total if enabled else -1)
