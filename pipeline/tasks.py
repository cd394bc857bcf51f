"""The units of work shipped to workers: transcode one video; write one shard from its videos' pieces.

Work is handed out per video, so every worker stays busy whatever the number of shards; a shard is written
when all of its videos are done, from their pieces in plan order, so its bytes do not depend on which worker
did what. A bad video becomes a failed row and never fails its shard; a shard appears under its final name
only when complete, after its manifest part: locally by a rename, on object storage by uploading the finished
local file last (a PUT, or a completed multipart upload, makes the object appear whole or not at all).
"""

from __future__ import annotations

import socket
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from avts import storage
from avts.atomic import atomic_path
from pipeline.config import EncodeSettings, ShardOutput
from pipeline.discover import ShardJob, VideoItem
from pipeline.manifest import FAILED, OK, Moments, ShardPart, ShardRecord, VideoRow, video_row, write_part
from pipeline.moments import fbank_moments
from pipeline.writer import sample_tar_bytes, write_tar


@dataclass(frozen=True)
class VideoReport:
    """What the driver learns about one video (small: the sample's bytes travel separately)."""

    row: VideoRow
    moments: Moments | None  # per-filter sums for the stats, for ingested training videos


@dataclass(frozen=True)
class VideoResult:
    """A transcoded video: its report and its sample's tar members (None when it failed)."""

    report: VideoReport
    tar_bytes: bytes | None


def transcode_video(item: VideoItem, settings: EncodeSettings) -> VideoResult:
    """Turn one video into its sample's tar members, or a failed row with the reason."""
    # Imported where a video is transcoded: the driver only ships this function to its workers and never loads the
    # decoding stack (PyAV; scipy through python_speech_features), ~0.2 s off every run's start.
    from pipeline.transcode import MediaError, transcode

    try:
        done = transcode(item, settings)
    except MediaError as error:
        return VideoResult(
            VideoReport(
                video_row(
                    item,
                    FAILED,
                    source=error.source,
                    reason=error.reason,
                    detail=error.detail,
                    decode_errors=error.decode_errors,
                ),
                None,
            ),
            None,
        )
    except Exception as error:
        return VideoResult(
            VideoReport(
                video_row(item, FAILED, reason="internal error", detail=f"{type(error).__name__}: {error}"), None
            ),
            None,
        )
    moments = fbank_moments(done.sample.fbank) if item.stats_rank is not None else None
    row = video_row(
        item,
        OK,
        source=done.source,
        duration_s=done.sample.meta.duration_s,
        decode_errors=done.decode_errors,
        facts=done.facts,
        detail=done.damage,
    )
    return VideoResult(VideoReport(row, moments), sample_tar_bytes(done.sample))


def node_name() -> str:
    """The Ray node id when running in a Ray worker, else the host name."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return str(ray.get_runtime_context().get_node_id())
    return socket.gethostname()


def write_shard(job: ShardJob, reports: list[VideoReport], output: ShardOutput, *pieces: bytes) -> ShardPart:
    """Write ``job``'s shard from the pieces of its ingested videos (in plan order) and record its part.

    ``reports`` has one entry per video of the job, in plan order; ``pieces`` one per ``ok`` report.
    """
    rows = [replace(report.row, shard=job.name) if report.row.status == OK else report.row for report in reports]
    moments = {report.row.key: report.moments for report in reports if report.moments is not None}

    def tar_and_part(path: Path) -> ShardPart:
        written = write_tar(path, pieces)
        record = ShardRecord(job.name, job.split, len(pieces), written.bytes, written.sha256, node_name())
        part = ShardPart(record, rows, moments)
        write_part(output.manifests, part)
        return part

    if storage.is_remote(output.out):
        with tempfile.TemporaryDirectory(prefix="avts-shard-") as folder:
            local = Path(folder) / job.name
            part = tar_and_part(local)
            storage.put_file(local, storage.join(output.out, job.name))  # last: the object appearing = complete
        return part
    with atomic_path(Path(output.out) / job.name) as tmp:
        part = tar_and_part(tmp)
    return part


def crashed_report(item: VideoItem, error: BaseException) -> VideoReport:
    """The report of a video whose worker kept dying while transcoding it."""
    detail = f"{type(error).__name__}: {error}"[:500]
    return VideoReport(video_row(item, FAILED, reason="worker crashed", detail=detail), None)
