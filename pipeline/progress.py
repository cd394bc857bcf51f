"""Progress display for long jobs: a rich bar on a terminal, plain periodic lines otherwise (CI, logs)."""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


def use_plain_lines(console: Console, forced: bool | None = None) -> bool:
    """Plain lines when asked, when CI is set, or when output is not a terminal."""
    if forced is not None:
        return forced
    return bool(os.environ.get("CI")) or not console.is_terminal


class CountProgress:
    """Counts items done and failed with a rate and an ETA."""

    def __init__(self, description: str, total: int, unit: str, console: Console | None = None,
                 plain: bool | None = None, every_s: float = 10.0) -> None:
        self.console = console or Console(file=sys.stderr)
        self.plain = use_plain_lines(self.console, plain)
        self.description, self.total, self.unit, self.every_s = description, total, unit, every_s
        self.done = 0
        self.failed = 0
        self._started = time.monotonic()
        self._last_line = 0.0
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> "CountProgress":
        self._started = time.monotonic()
        if not self.plain:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn(self.unit), TaskProgressColumn(), TextColumn("[red]{task.fields[failed]} failed"),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, failed=0, rate="")
        return self

    def advance(self, done: int, failed: int = 0) -> None:
        """Count ``done`` more items, ``failed`` of which failed."""
        self.done += done
        self.failed += failed
        rate = self.done / max(time.monotonic() - self._started, 1e-9)
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, failed=self.failed,
                                  rate=f"{rate:.1f} {self.unit}/s")
        elif time.monotonic() - self._last_line >= self.every_s or self.done >= self.total:
            self._last_line = time.monotonic()
            remaining = (self.total - self.done) / rate if rate > 0 else float("nan")
            self.console.print(f"{self.description}: {self.done}/{self.total} {self.unit}, {self.failed} failed, "
                               f"{rate:.1f} {self.unit}/s, ETA {remaining:.0f} s", highlight=False)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
