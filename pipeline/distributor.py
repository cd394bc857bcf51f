"""Distributor stage: hand videos to workers and finished shards to writers, with bounded work in flight.

Work goes out per video, so every worker is busy whatever the shard count; when the last video of a shard
reports, the shard is handed to a writer with its videos' pieces in plan order (so its bytes are the same
whichever workers did the work). At most ``in_flight`` videos are submitted at once, which bounds memory
however long the plan. The engines (:mod:`pipeline.ray_engine`, :mod:`pipeline.process_engine`) retry a
task whose worker died; a video whose worker keeps dying becomes a failed row, and a shard that cannot be
written is reported as an error: the caller records it and the rest of the run goes on.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.discover import ShardJob, VideoItem
from pipeline.manifest import OK, ShardPart
from pipeline.tasks import VideoReport, crashed_report

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_env(threads: int) -> dict[str, str]:
    """Environment for worker processes: math libraries limited to the worker's threads.

    Without it every worker's numpy/BLAS starts one thread per core (measured: one worker kept 5.4 cores
    busy on a 16-core box), so N workers oversubscribe the machine N times over.
    """
    return {name: str(threads) for name in THREAD_VARIABLES}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the duration: worker processes started meanwhile (a local pool's, a
    local Ray's) inherit them before they import numpy."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Engine(Protocol):
    """Runs the two kinds of task somewhere (a Ray cluster, a local process pool)."""

    def submit_video(self, item: VideoItem) -> Hashable:
        """Start transcoding ``item``; returns a handle."""

    def video_outcome(self, handle: Hashable) -> tuple[VideoReport, Any]:
        """The report of a finished video and a reference to its tar piece (raises if its worker kept dying)."""

    def submit_shard(self, job: ShardJob, reports: list[VideoReport], pieces: list[Any]) -> Hashable:
        """Start writing ``job``'s shard from its reports and piece references; returns a handle."""

    def shard_outcome(self, handle: Hashable) -> ShardPart:
        """The part of a written shard (raises what stopped the writer)."""

    def wait(self, handles: list[Hashable]) -> list[Hashable]:
        """Block until at least one of ``handles`` is finished; returns the finished ones."""

    def close(self) -> None:
        """Stop the workers this engine started."""


@dataclass(frozen=True)
class VideoDone:
    """A video finished (ingested or failed)."""

    job: ShardJob
    report: VideoReport


@dataclass(frozen=True)
class ShardDone:
    """A shard was written (``part``) or could not be (``error``)."""

    job: ShardJob
    part: ShardPart | None
    error: BaseException | None = None


@dataclass
class _ShardInProgress:
    job: ShardJob
    reports: list[VideoReport | None]
    pieces: dict[int, Any] = field(default_factory=dict)

    def complete(self) -> bool:
        return all(report is not None for report in self.reports)


def distribute(jobs: list[ShardJob], engine: Engine, in_flight: int) -> Iterator[VideoDone | ShardDone]:
    """Run every video of ``jobs`` and write every shard; yields an event as each video and shard finishes."""
    queue = deque((job, index) for job in jobs for index in range(len(job.items)))
    shards = {job.name: _ShardInProgress(job, [None] * len(job.items)) for job in jobs}
    videos: dict[Hashable, tuple[ShardJob, int]] = {}
    writes: dict[Hashable, ShardJob] = {}
    for job in jobs:  # a shard with no videos is written at once (cannot happen from a plan, but stay total)
        if not job.items:
            writes[engine.submit_shard(job, [], [])] = job
    while queue or videos or writes:
        while queue and len(videos) < in_flight:
            job, index = queue.popleft()
            videos[engine.submit_video(job.items[index])] = (job, index)
        for handle in engine.wait(list(videos) + list(writes)):
            if handle in writes:
                job = writes.pop(handle)
                try:
                    yield ShardDone(job, engine.shard_outcome(handle))
                except Exception as error:
                    yield ShardDone(job, None, error)
                continue
            job, index = videos.pop(handle)
            shard = shards[job.name]
            try:
                report, piece = engine.video_outcome(handle)
            except Exception as error:
                report, piece = crashed_report(job.items[index], error), None
            shard.reports[index] = report
            if report.row.status == OK:
                shard.pieces[index] = piece
            yield VideoDone(job, report)
            if shard.complete():
                reports = [report for report in shard.reports if report is not None]
                pieces = [shard.pieces[i] for i in sorted(shard.pieces)]
                writes[engine.submit_shard(job, reports, pieces)] = job
                del shards[job.name]
