"""A local pool of worker processes for :func:`pipeline.distributor.distribute` (no Ray needed).

Each worker runs one task at a time, so when a worker dies the pool knows exactly which task it held:
that task alone is retried (up to ``retries`` times) on a fresh worker, and the others go on. Workers are
started with ``spawn`` and die with the driver (``PR_SET_PDEATHSIG`` on Linux), so a killed run leaves no
orphans to race its rerun.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from avts.interrupts import interrupts_held
from pipeline.config import EncodeSettings, ShardOutput
from pipeline.discover import ShardJob, VideoItem
from pipeline.distributor import environment
from pipeline.manifest import ShardPart
from pipeline.tasks import VideoReport, VideoResult, transcode_video, write_shard

_PR_SET_PDEATHSIG = 1


class WorkerDied(RuntimeError):
    """A task's worker process died every time it ran the task."""


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this process when its parent dies; exit now if the parent is already gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def _worker_main(connection: Connection, parent_pid: int) -> None:
    """Run tasks received on ``connection`` until told to stop (``None``)."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle (held back since the start)
    while True:
        message = connection.recv()
        if message is None:  # every result is sent and every file the worker wrote is closed: exit at once
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # without the interpreter's teardown of numpy and PyAV, which the driver would wait for
        task_id, function, args = message
        try:
            outcome = (task_id, True, function(*args))
        except Exception as error:
            outcome = (task_id, False, error)
        try:
            connection.send(outcome)
        except Exception as error:
            connection.send((task_id, False, RuntimeError(f"{type(error).__name__}: {error}")))


@dataclass
class _Task:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    attempts: int = 0


class _Worker:
    def __init__(self, context: Any, env: dict[str, str]) -> None:
        self.connection, child = context.Pipe()
        with environment(env), interrupts_held():
            self.process = context.Process(target=_worker_main, args=(child, os.getpid()), daemon=True)
            self.process.start()
        child.close()
        self.task: int | None = None


class ProcessEngine:
    """Transcodes videos and writes shards in ``workers`` local processes."""

    def __init__(
        self, workers: int, settings: EncodeSettings, output: ShardOutput, retries: int, env: dict[str, str]
    ) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._env = env
        self._settings, self._output, self._retries = settings, output, retries
        self._workers = [_Worker(self._context, env) for _ in range(workers)]
        self._waiting: deque[int] = deque()
        self._tasks: dict[int, _Task] = {}
        self._finished: dict[int, tuple[bool, Any]] = {}
        self._next_id = 0

    # -- the Engine protocol ---------------------------------------------------------------------------------
    def submit_video(self, item: VideoItem) -> Hashable:
        """Queue the transcoding of ``item``."""
        return self.submit(transcode_video, (item, self._settings))

    def video_outcome(self, handle: Hashable) -> tuple[VideoReport, Any]:
        """The report and tar piece of a finished video."""
        result: VideoResult = self._take(handle)
        return result.report, result.tar_bytes

    def submit_shard(self, job: ShardJob, reports: list[VideoReport], pieces: list[Any]) -> Hashable:
        """Queue the writing of a shard, ahead of waiting videos (it frees their memory)."""
        return self.submit(write_shard, (job, reports, self._output, *pieces), first=True)

    def shard_outcome(self, handle: Hashable) -> ShardPart:
        """The part of a written shard."""
        part: ShardPart = self._take(handle)
        return part

    def wait(self, handles: list[Hashable]) -> list[Hashable]:
        """Block until one of ``handles`` has finished."""
        while True:
            ready: list[Hashable] = [handle for handle in handles if handle in self._finished]
            if ready:
                return ready
            busy = [worker for worker in self._workers if worker.task is not None]
            if not busy:
                raise RuntimeError("waiting for tasks that were never submitted")
            signalled = wait([w.connection for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.connection in signalled and worker.connection.poll():
                    self._receive(worker)
                elif worker.process.sentinel in signalled and not worker.process.is_alive():
                    self._replace(worker)
            self._dispatch()

    def close(self) -> None:
        """Stop every worker (they also die on their own if this process dies)."""
        for worker in self._workers:
            with contextlib.suppress(OSError):  # a worker that died meanwhile
                worker.connection.send(None)
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()

    # -- the pool ---------------------------------------------------------------------------------------------
    def submit(self, function: Callable[..., Any], args: tuple[Any, ...], first: bool = False) -> int:
        """Queue ``function(*args)`` (a module-level function) for the next free worker; returns its handle."""
        task_id = self._next_id
        self._next_id += 1
        self._tasks[task_id] = _Task(function, args)
        if first:
            self._waiting.appendleft(task_id)
        else:
            self._waiting.append(task_id)
        self._dispatch()
        return task_id

    def _take(self, handle: Hashable) -> Any:
        ok, value = self._finished.pop(handle)  # type: ignore[call-overload]
        if not ok:
            raise value
        return value

    def _dispatch(self) -> None:
        for worker in self._workers:
            if worker.task is None and self._waiting:
                task_id = self._waiting.popleft()
                task = self._tasks[task_id]
                task.attempts += 1
                worker.task = task_id
                worker.connection.send((task_id, task.function, task.args))

    def _receive(self, worker: _Worker) -> None:
        try:
            task_id, ok, value = worker.connection.recv()
        except (EOFError, OSError):
            self._replace(worker)
            return
        worker.task = None
        del self._tasks[task_id]
        self._finished[task_id] = (ok, value)

    def _replace(self, worker: _Worker) -> None:
        """A worker died: retry its task elsewhere (or give up on it) and start a fresh worker."""
        task_id, code = worker.task, worker.process.exitcode
        worker.process.join()
        worker.connection.close()
        self._workers[self._workers.index(worker)] = _Worker(self._context, self._env)
        if task_id is None:
            return
        task = self._tasks[task_id]
        if task.attempts > self._retries:
            del self._tasks[task_id]
            self._finished[task_id] = (
                False,
                WorkerDied(f"worker died (exit code {code}) in each of {task.attempts} attempts"),
            )
        else:
            self._waiting.appendleft(task_id)
