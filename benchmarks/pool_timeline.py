"""Where the ingest's workers spend a run: busy, starting, waiting between tasks, or idle at the end.

Runs ``pipeline.ingest.run_ingest`` in this process with the process pool (default flags, W workers, N clips),
with every task the pool runs timed inside its worker (``time.monotonic``: one clock for all processes of a
Linux machine). Per worker, the run's wall time splits into:

* start: from the run's start to the worker's first task (interpreter start-up, imports, discovery and plan);
* transcode and write: time inside its video and shard tasks;
* between tasks: from one task's end to the next one's start (the result's trip to the driver, the driver's
  hand-out, the next task's trip back);
* end: from its last task's end to the run's end (the last clips of other workers, the last shard's write,
  the manifests and the stats).

    python benchmarks/pool_timeline.py --inputs CLIPS --workdir /tmp/timeline --workers 16 --clips 480
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]


@dataclass(frozen=True)
class Timed:
    """A task's value with when and where it ran."""

    value: Any
    kind: str
    pid: int
    started: float
    ended: float


def timed_call(function: Any, *args: Any) -> Timed:
    """Run one pool task in its worker, timed."""
    started = time.monotonic()
    value = function(*args)
    return Timed(value, function.__name__, os.getpid(), started, time.monotonic())


def instrument(records: list[Timed]) -> None:
    """Make the process pool wrap every task in :func:`timed_call` and collect the timings in ``records``."""
    from pipeline.process_engine import ProcessEngine

    submit, take = ProcessEngine.submit, ProcessEngine._take

    def timed_submit(self: ProcessEngine, function: Any, args: tuple[Any, ...], first: bool = False) -> int:
        return submit(self, timed_call, (function, *args), first)

    def timed_take(self: ProcessEngine, handle: Any) -> Any:
        outcome = take(self, handle)
        records.append(outcome)
        return outcome.value

    ProcessEngine.submit = timed_submit  # type: ignore[method-assign]
    ProcessEngine._take = timed_take  # type: ignore[method-assign]


def breakdown(records: list[Timed], started: float, ended: float) -> dict[str, float]:
    """Mean seconds per worker in each part of the run (see the module's docstring)."""
    by_worker: dict[int, list[Timed]] = defaultdict(list)
    for record in records:
        by_worker[record.pid].append(record)
    parts: dict[str, float] = defaultdict(float)
    for tasks in by_worker.values():
        tasks.sort(key=lambda task: task.started)
        parts["start"] += tasks[0].started - started
        parts["end"] += ended - tasks[-1].ended
        for task in tasks:
            parts["write" if task.kind == "write_shard" else "transcode"] += task.ended - task.started
        parts["between tasks"] += sum(later.started - earlier.ended for earlier, later in itertools.pairwise(tasks))
    return {name: value / len(by_worker) for name, value in parts.items()}


def main(argv: list[str] | None = None) -> int:
    """Run one timed ingest and print the per-worker breakdown of its wall time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, required=True, help="folder of clips (*.mp4), cycled under new names")
    parser.add_argument("--workdir", type=Path, required=True, help="scratch folder (inputs' links and outputs)")
    parser.add_argument("--workers", type=int, default=16, help="pool workers (default 16)")
    parser.add_argument("--clips", type=int, default=480, help="clips to ingest (default 480)")
    args = parser.parse_args(argv)
    os.environ.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"))
    from bench_results import clips_in, machine_line
    from ingest_bench import ingest_config, replicate
    from rich.console import Console

    from pipeline.ingest import run_ingest

    found = clips_in(args.inputs)
    workdir = args.workdir.resolve()
    replicate(found, args.clips, workdir / "replicas")
    records: list[Timed] = []
    instrument(records)
    config = ingest_config(workdir / "replicas", workdir / "out", args.workers, "processes", 256)
    started = time.monotonic()
    summary = run_ingest(config, console=Console(file=io.StringIO(), quiet=True))
    ended = time.monotonic()
    if summary.ok != args.clips:
        raise SystemExit(f"only {summary.ok} of {args.clips} clips ingested")
    wall = ended - started
    last_task = max(record.ended for record in records)
    print(f"Machine: {machine_line()}.\n")
    print(
        f"{args.workers} workers, {args.clips} clips: {wall:.2f} s wall; after the last task: {ended - last_task:.2f} s"
    )
    print("\n| part of the run | seconds per worker | share of the wall time |\n|---|---:|---:|")
    for name, seconds in breakdown(records, started, ended).items():
        print(f"| {name} | {seconds:.2f} | {seconds / wall:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
