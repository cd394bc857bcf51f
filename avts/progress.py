"""Progress display for every long job: a rich bar on a terminal, plain periodic lines otherwise (CI, logs).

:class:`CountProgress` counts items (videos ingested, videos generated, files probed); :class:`StepProgress`
shows training steps with the loss and throughput.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def use_plain_lines(console: Console, forced: bool | None = None) -> bool:
    """Plain lines when asked, when CI is set, or when output is not a terminal."""
    if forced is not None:
        return forced
    return bool(os.environ.get("CI")) or not console.is_terminal


class CountProgress:
    """Counts items done and failed with a rate and an ETA."""

    def __init__(
        self,
        description: str,
        total: int,
        unit: str,
        console: Console | None = None,
        plain: bool | None = None,
        every_s: float = 10.0,
    ) -> None:
        self.console = console or Console(file=sys.stderr)
        self.plain = use_plain_lines(self.console, plain)
        self.description, self.total, self.unit, self.every_s = description, total, unit, every_s
        self.done = 0
        self.failed = 0
        self._done_before = 0  # items an earlier run finished: shown, but not counted in the rate
        self._started = time.monotonic()
        self._last_line = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> CountProgress:
        self._started = time.monotonic()
        if not self.plain:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(self.unit),
                TaskProgressColumn(),
                TextColumn("[red]{task.fields[failed]} failed"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, failed=0, rate="")
        return self

    def already_done(self, done: int, failed: int = 0) -> None:
        """Count items an earlier run finished (a resume): they do not count towards the rate."""
        self._done_before += done
        self.advance(done, failed)

    def advance(self, done: int, failed: int = 0) -> None:
        """Count ``done`` more items, ``failed`` of which failed."""
        self.done += done
        self.failed += failed
        rate = (self.done - self._done_before) / max(time.monotonic() - self._started, 1e-9)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.done, failed=self.failed, rate=f"{rate:.1f} {self.unit}/s")
        elif time.monotonic() - self._last_line >= self.every_s or self.done >= self.total:
            self._last_line = time.monotonic()
            eta = f"ETA {(self.total - self.done) / rate:.0f} s" if rate > 0 else "ETA unknown"
            self.console.print(
                f"{self.description}: {self.done}/{self.total} {self.unit}, {self.failed} failed, "
                f"{rate:.1f} {self.unit}/s, {eta}",
                highlight=False,
            )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


class StepProgress:
    """Steps of one epoch (total may be unknown for streamed shards), showing loss and throughput."""

    def __init__(
        self,
        description: str,
        total: int | None,
        console: Console,
        enabled: bool = True,
        plain: bool | None = None,
        every_s: float = 15.0,
    ) -> None:
        self.description, self.total, self.console, self.enabled = description, total, console, enabled
        self.plain = use_plain_lines(console, plain)
        self.every_s = every_s
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = 0.0

    def __enter__(self) -> StepProgress:
        if self.enabled and not self.plain:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]} clips/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, loss="-", rate="-")
        return self

    def update(self, step: int, loss: float, clips_per_s: float) -> None:
        """Show the latest step, loss and throughput."""
        if not self.enabled:
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step, loss=f"{loss:.4f}", rate=f"{clips_per_s:.1f}")
        elif time.monotonic() - self._last_line >= self.every_s:
            self._last_line = time.monotonic()
            of_total = f"/{self.total}" if self.total else ""
            self.console.print(
                f"{self.description}: step {step}{of_total}, loss {loss:.4f}, {clips_per_s:.1f} clips/s",
                highlight=False,
            )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
