"""Manifests: per-shard part files written by workers, merged into parquet tables at the end.

A part file (``<manifests>/parts/<shard>.json``) is written atomically before its shard is renamed into
place (or, on object storage, uploaded), so "the shard tar exists and so does its part" means "this shard is
complete" on resume. The manifest folder may be a local path or a URL (read and written through avts.storage).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from avts import storage
from pipeline.discover import VideoItem

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"  # found under the source but not ingested on purpose (hidden, left out by split files, ...)


@dataclass(frozen=True)
class SourceInfo:
    """What was learned about a source file, kept for the manifest even when it fails."""

    fps: float | None = None
    width: int | None = None
    height: int | None = None
    has_audio: bool | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_stream: int | None = None  # container index of the audio stream used (chosen as the ffmpeg CLI does)
    duration_s: float | None = None  # what the container declares (a truncated file says more than it holds)


@dataclass(frozen=True)
class IngestFacts:
    """How faithfully a kept file became a sample: audio placement by timestamps and damage (pipeline.audio)."""

    audio_gaps: int = 0  # silences inserted mid-file where the audio timestamps jump forward (≥ 10 ms)
    audio_gap_s: float = 0.0
    audio_overlaps: int = 0  # places where the timestamps went back (≥ 10 ms): the repeated audio was dropped
    audio_overlap_s: float = 0.0
    audio_drift_ms: float = 0.0  # largest distance between audio and its timestamps left as jitter (< 1 frame)
    truncated: bool = False  # kept with --keep-truncated: the file ends before its declared duration
    lost_s: float = 0.0  # media lost mid-file to undecodable data (kept with --keep-truncated above 0.5 s)
    audible: bool = True  # False: kept with --keep-without-audio (no audio stream, or silence): silent features
    timestamp_jumps: int = 0  # jumps of more than 10 s in a discontinuous container's clock (MPEG-TS), rejoined


@dataclass(frozen=True)
class VideoRow:
    """One row of ``videos.parquet``: one input file, ingested or not."""

    key: str
    path: str
    label: str | None
    split: str | None  # None for skipped entries
    status: str
    reason: str | None  # short and stable ("corrupt", "too short", ...): what failed rows are grouped by
    detail: str | None  # what exactly was wrong, for a person
    duration_s: float | None
    fps: float | None
    width: int | None
    height: int | None
    has_audio: bool | None
    audio_sample_rate: int | None
    audio_channels: int | None
    shard: str | None
    in_stats_subset: bool  # decided when the run ends (see pipeline.discover.stats_order)
    source_bytes: int
    decode_errors: int = 0
    stats_rank: int | None = None
    source_duration_s: float | None = None
    audio_stream: int | None = None
    audio_gaps: int = 0
    audio_gap_s: float = 0.0
    audio_overlaps: int = 0
    audio_overlap_s: float = 0.0
    audio_drift_ms: float = 0.0
    truncated: bool = False
    lost_s: float = 0.0
    audible: bool = True
    timestamp_jumps: int = 0
    source_mtime_ns: int | None = None  # with source_bytes: a rerun redoes a file changed since (None: unknown)


def source_size(path: Path) -> int:
    """The size of a source file now (0 when it cannot be read): recorded in its row, compared on resume."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def source_stamp(path: Path) -> tuple[int, int | None]:
    """A source file's size and modification time in ns, from one ``stat`` ((0, None) when it cannot be read):
    recorded in its row and compared on resume, so a file rewritten since is redone, also at the same size (a
    preallocated download finishing)."""
    try:
        status = path.stat()
    except OSError:
        return 0, None
    return status.st_size, status.st_mtime_ns


def video_row(
    item: VideoItem,
    status: str,
    *,
    source: SourceInfo | None = None,
    reason: str | None = None,
    detail: str | None = None,
    shard: str | None = None,
    duration_s: float | None = None,
    decode_errors: int = 0,
    facts: IngestFacts | None = None,
) -> VideoRow:
    """The manifest row of ``item``: what the plan knows, plus what transcoding learned."""
    info = source or SourceInfo()
    learned = facts or IngestFacts()
    size, mtime_ns = source_stamp(item.path)
    return VideoRow(
        key=item.key,
        path=item.relpath,
        label=item.label,
        split=item.split,
        status=status,
        reason=reason,
        detail=detail or None,
        duration_s=duration_s,
        fps=info.fps,
        width=info.width,
        height=info.height,
        has_audio=info.has_audio,
        audio_sample_rate=info.audio_sample_rate,
        audio_channels=info.audio_channels,
        shard=shard,
        in_stats_subset=False,
        source_bytes=size,
        source_mtime_ns=mtime_ns,
        decode_errors=decode_errors,
        stats_rank=item.stats_rank,
        source_duration_s=info.duration_s,
        audio_stream=info.audio_stream,
        **asdict(learned),
    )


def skipped_row(relpath: str, reason: str, key: str, label: str | None = None) -> VideoRow:
    """The manifest row of something under the source that is not ingested on purpose."""
    return VideoRow(
        key=key,
        path=relpath,
        label=label,
        split=None,
        status=SKIPPED,
        reason=reason,
        detail=None,
        duration_s=None,
        fps=None,
        width=None,
        height=None,
        has_audio=None,
        audio_sample_rate=None,
        audio_channels=None,
        shard=None,
        in_stats_subset=False,
        source_bytes=0,
    )


@dataclass(frozen=True)
class ShardRecord:
    """One row of ``shards.parquet``."""

    shard: str
    split: str
    samples: int
    bytes: int
    sha256: str
    node: str  # the Ray node id (or host name) of the worker that wrote the shard


Moments = tuple[list[float], list[float], int]  # per-filter sums, sums of squares, frames


@dataclass
class ShardPart:
    """Everything known about one written shard; also the content of its part file."""

    record: ShardRecord
    videos: list[VideoRow]
    moments: dict[str, Moments] = field(default_factory=dict)  # per ingested training video

    def to_json(self) -> bytes:
        """Serialize for the part file."""
        return json.dumps(asdict(self), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> ShardPart:
        """Parse a part file."""
        raw = json.loads(data)
        moments = {key: (list(value[0]), list(value[1]), int(value[2])) for key, value in raw["moments"].items()}
        return cls(
            record=ShardRecord(**raw["record"]), videos=[VideoRow(**row) for row in raw["videos"]], moments=moments
        )


def part_path(manifest_dir: str | Path, shard: str) -> str:
    """Where the part file of ``shard`` lives (a path or URL)."""
    return storage.join(manifest_dir, "parts", f"{shard}.json")


def write_part(manifest_dir: str | Path, part: ShardPart) -> None:
    """Atomically write a shard's part file."""
    storage.write_bytes_atomic(part_path(manifest_dir, part.record.shard), part.to_json())


def read_part(manifest_dir: str | Path, shard: str) -> ShardPart | None:
    """The part file of ``shard``, or None if there is none (or it is unreadable)."""
    try:
        return ShardPart.from_json(storage.read_bytes(part_path(manifest_dir, shard)))
    except (OSError, ValueError, KeyError, TypeError):
        return None
