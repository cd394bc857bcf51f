"""Training progress: a rich bar with loss and clips/s on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.progress import use_plain_lines


class StepProgress:
    """Steps of one epoch (total may be unknown for streamed shards), showing loss and throughput."""

    def __init__(self, description: str, total: int | None, console: Console, enabled: bool = True,
                 plain: bool | None = None, every_s: float = 15.0) -> None:
        self.description, self.total, self.console, self.enabled = description, total, console, enabled
        self.plain = use_plain_lines(console, plain)
        self.every_s = every_s
        self._progress: Progress | None = None
        self._task = None
        self._last_line = 0.0

    def __enter__(self) -> "StepProgress":
        if self.enabled and not self.plain:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} clips/s"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, loss="-", rate="-")
        return self

    def update(self, step: int, loss: float, clips_per_s: float) -> None:
        """Show the latest step, loss and throughput."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=f"{loss:.4f}", rate=f"{clips_per_s:.1f}")
        elif time.monotonic() - self._last_line >= self.every_s:
            self._last_line = time.monotonic()
            of_total = f"/{self.total}" if self.total else ""
            self.console.print(f"{self.description}: step {step}{of_total}, loss {loss:.4f}, "
                               f"{clips_per_s:.1f} clips/s", highlight=False)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
