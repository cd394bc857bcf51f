"""Distributor stage: run shard jobs on Ray (default) or a local process pool, with bounded work in flight.

Both engines keep at most ``config.in_flight`` shard tasks submitted at once, so memory stays bounded
however many videos there are, and retry a task whose worker died. A job that still fails is reported as
an exception, never raised: the orchestrator records its videos and the rest of the run goes on.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from pipeline.config import IngestConfig
from pipeline.discover import ShardJob
from pipeline.manifest import ShardPart
from pipeline.shard_worker import ingest_shard

Outcome = tuple[ShardJob, ShardPart | BaseException]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_env(threads: int) -> dict[str, str]:
    """Environment for worker processes: math libraries limited to the worker's threads.

    Without it every worker's numpy/BLAS starts one thread per core (measured: one worker kept 5.4 cores
    busy on a 16-core box), so N workers oversubscribe the machine N times over.
    """
    return {name: str(threads) for name in THREAD_VARIABLES}


def run_jobs(jobs: list[ShardJob], config: IngestConfig) -> Iterator[Outcome]:
    """Yield ``(job, part or error)`` for every job, in completion order, on the configured engine."""
    if not jobs:
        return iter(())
    if config.engine == "ray":
        return _run_on_ray(jobs, config)
    return _run_in_processes(jobs, config)


def _run_on_ray(jobs: list[ShardJob], config: IngestConfig) -> Iterator[Outcome]:
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("Ray is not installed: `pip install 'ray[default]'` or use --engine processes") from error
    address = config.address or os.environ.get("RAY_ADDRESS")
    started_here = not ray.is_initialized()
    if started_here:
        runtime_env = {"env_vars": worker_env(config.threads_per_worker)}
        if address:
            ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
        else:
            ray.init(num_cpus=config.workers * config.threads_per_worker, include_dashboard=False,
                     log_to_driver=False, configure_logging=False, runtime_env=runtime_env)
    try:
        task = ray.remote(num_cpus=config.threads_per_worker, max_retries=config.task_retries)(ingest_shard)
        config_ref = ray.put(config)
        pending: dict[object, ShardJob] = {}
        queue = list(reversed(jobs))
        while queue or pending:
            while queue and len(pending) < config.in_flight:
                job = queue.pop()
                pending[task.remote(job, config_ref)] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                yield job, ray.get(ready[0])
            except Exception as error:  # noqa: BLE001 - reported per job, the run goes on
                yield job, error
    finally:
        if started_here:
            ray.shutdown()


def _run_in_processes(jobs: list[ShardJob], config: IngestConfig) -> Iterator[Outcome]:
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(worker_env(config.threads_per_worker))  # inherited by the spawned workers
    try:
        yield from _process_pool(jobs, config)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _process_pool(jobs: list[ShardJob], config: IngestConfig) -> Iterator[Outcome]:
    queue = list(reversed(jobs))
    attempts: dict[str, int] = {}
    context = multiprocessing.get_context("spawn")
    while queue:
        pool = ProcessPoolExecutor(max_workers=config.workers, mp_context=context)
        pending: dict[Future[ShardPart], ShardJob] = {}
        try:
            while queue or pending:
                while queue and len(pending) < config.in_flight:
                    job = queue.pop()
                    pending[pool.submit(ingest_shard, job, config)] = job
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    error = future.exception()
                    if error is None:
                        yield job, future.result()
                    elif isinstance(error, BrokenProcessPool) and attempts.get(job.name, 0) < config.task_retries:
                        attempts[job.name] = attempts.get(job.name, 0) + 1
                        queue.append(job)
                    else:
                        yield job, error
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    queue.extend(pending.values())  # the pool is gone: resubmit what it held
                    pending.clear()
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
