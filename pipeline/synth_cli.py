"""``avts-synth``: generate synthetic audio-visual videos whose events are synchronized (see :mod:`pipeline.synth`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.synth import SynthConfig, generate

PLAIN_REPORT_EVERY_S = 5.0


def parse_args(argv: list[str] | None = None) -> SynthConfig:
    """Parse the command line into a generator configuration."""
    parser = argparse.ArgumentParser(
        prog="avts-synth",
        description="Generate MP4 videos (H.264 + AAC) in which a visual and a sound event happen together at random "
        "times, for smoke tests and for checking that training learns audio-visual synchronization.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--videos", type=int, required=True, help="number of videos")
    parser.add_argument("--duration", type=float, default=SynthConfig.duration_s, help="seconds per video")
    parser.add_argument("--size", type=int, default=SynthConfig.size, help="frame width and height in pixels")
    parser.add_argument("--seed", type=int, default=SynthConfig.seed, help="random seed")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    args = parser.parse_args(argv)
    try:
        return SynthConfig(
            out=args.out,
            videos=args.videos,
            duration_s=args.duration,
            size=args.size,
            seed=args.seed,
            workers=args.workers,
        )
    except ValueError as error:
        parser.error(str(error))


@contextmanager
def _rich_progress(console: Console, total: int) -> Iterator[Callable[[int], None]]:
    """A live progress bar, for a terminal."""
    columns = (
        TextColumn("generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("videos", total=total)
        yield lambda done: bar.update(task, completed=done)


@contextmanager
def _plain_progress(console: Console, total: int) -> Iterator[Callable[[int], None]]:
    """A line every few seconds and one at the end, for logs."""
    start = last = time.monotonic()

    def report(done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done == total or now - last >= PLAIN_REPORT_EVERY_S:
            last = now
            console.print(f"generated {done}/{total} videos ({now - start:.0f} s)")

    yield report


def main(argv: list[str] | None = None) -> int:
    """Run ``avts-synth``; returns the exit status."""
    config = parse_args(argv)
    console = Console(soft_wrap=True)
    progress = _rich_progress if sys.stdout.isatty() else _plain_progress
    start = time.monotonic()
    with progress(console, config.videos) as report:
        paths = generate(config, report)
    elapsed = time.monotonic() - start
    size = sum(path.stat().st_size for path in paths)
    console.print(
        f"{len(paths)} videos, {len(paths) * config.duration_s:.0f} s of video, {size / 1e6:.1f} MB "
        f"in {config.out}, {elapsed:.1f} s elapsed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
