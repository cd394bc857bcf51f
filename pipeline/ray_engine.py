"""Ray tasks for :func:`pipeline.distributor.distribute`: a local Ray, or a cluster joined with ``--address``.

A video task returns two objects: its small report, which the driver reads, and its tar piece, which stays
in Ray's object store until the shard-writing task (scheduled anywhere in the cluster) takes it. Ray retries
a task whose worker or node died (``task_retries``) and rebuilds lost pieces from their lineage.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pipeline.config import EncodeSettings, IngestConfig
from pipeline.discover import ShardJob, VideoItem
from pipeline.manifest import ShardPart
from pipeline.ray_start import EmbeddedRay, RayUnreachable, join_cluster, prepare_environment
from pipeline.tasks import VideoReport, transcode_video, write_shard


def transcode_split(item: VideoItem, settings: EncodeSettings) -> tuple[VideoReport, bytes | None]:
    """:func:`pipeline.tasks.transcode_video` with its result split in two Ray objects."""
    result = transcode_video(item, settings)
    return result.report, result.tar_bytes


class RayEngine:
    """Transcodes videos and writes shards as Ray tasks."""

    def __init__(self, config: IngestConfig, env: dict[str, str]) -> None:
        address = config.ray_address
        prepare_environment(address)
        try:
            import ray
        except ImportError as error:
            raise ImportError(
                "Ray is not installed: `pip install 'ray[default]'`, or use --engine processes"
            ) from error
        self._ray: Any = ray  # untyped use: Ray's stubs do not know handles are ObjectRefs
        self._started_here = not ray.is_initialized()
        self._embedded: EmbeddedRay | None = None
        if self._started_here and address:
            try:
                join_cluster(ray, address, env)
            except RayUnreachable as error:
                if config.address is None:  # named by the environment alone: it may be left over from another job
                    raise RayUnreachable(
                        f"{error} (RAY_ADDRESS={address} is set; unset it, or pass --engine processes, to run on "
                        "this machine)"
                    ) from None
                raise
        elif self._started_here:
            self._embedded = EmbeddedRay(ray, config.workers * config.threads_per_worker, env)
        self._transcode: Any = ray.remote(
            num_cpus=config.threads_per_worker, max_retries=config.task_retries, num_returns=2
        )(transcode_split)
        # writers spread over the nodes (their I/O too); they need no core of their own
        self._write = ray.remote(num_cpus=0, max_retries=config.task_retries, scheduling_strategy="SPREAD")(write_shard)
        self._settings = ray.put(config.encode_settings())
        self._output = ray.put(config.shard_output())
        self._pieces: dict[Hashable, Any] = {}

    def submit_video(self, item: VideoItem) -> Hashable:
        """Start a video task."""
        report, piece = self._transcode.remote(item, self._settings)
        self._pieces[report] = piece
        return report

    def video_outcome(self, handle: Hashable) -> tuple[VideoReport, Any]:
        """The report of a finished video and the reference of its piece."""
        piece = self._pieces.pop(handle)
        report: VideoReport = self._ray.get(handle)
        return report, piece

    def submit_shard(self, job: ShardJob, reports: list[VideoReport], pieces: list[Any]) -> Hashable:
        """Start a shard-writing task; Ray hands it the pieces wherever it runs."""
        return self._write.remote(job, reports, self._output, *pieces)

    def shard_outcome(self, handle: Hashable) -> ShardPart:
        """The part of a written shard."""
        part: ShardPart = self._ray.get(handle)
        return part

    def wait(self, handles: list[Hashable]) -> list[Hashable]:
        """Block until at least one task is finished; return all that are."""
        self._ray.wait(handles, num_returns=1, fetch_local=False)
        ready, _ = self._ray.wait(handles, num_returns=len(handles), timeout=0, fetch_local=False)
        return list(ready)

    def close(self) -> None:
        """Shut down the local Ray this engine started (a joined cluster keeps running)."""
        if self._embedded is not None:
            self._embedded.stop()
        elif self._started_here:
            self._ray.shutdown()  # a joined cluster: only this driver disconnects
