"""Manifests: per-shard part files written by workers, merged into parquet tables at the end.

A part file (``<manifests>/parts/<shard>.json``) is written atomically before its shard is renamed into
place, so "the shard tar exists and so does its part" means "this shard is complete" on resume.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.writer import atomic_write_bytes

OK = "ok"
FAILED = "failed"


@dataclass(frozen=True)
class VideoRow:
    """One row of ``videos.parquet``: one input file, ingested or not."""

    key: str
    path: str
    label: str | None
    split: str
    status: str
    reason: str | None
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


@dataclass(frozen=True)
class ShardRecord:
    """One row of ``shards.parquet``."""

    shard: str
    split: str
    samples: int
    bytes: int
    sha256: str


@dataclass
class ShardPart:
    """Everything a worker reports about one shard; also the content of its part file."""

    record: ShardRecord
    videos: list[VideoRow]
    # per ingested training video: [per-filter sums, per-filter sums of squares, frames]
    moments: dict[str, tuple[list[float], list[float], int]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Serialize for the part file."""
        return json.dumps(asdict(self), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> "ShardPart":
        """Parse a part file."""
        raw = json.loads(data)
        return cls(record=ShardRecord(**raw["record"]), videos=[VideoRow(**row) for row in raw["videos"]],
                   moments={key: tuple(value) for key, value in raw["moments"].items()})


def part_path(manifest_dir: Path, shard: str) -> Path:
    """Where the part file of ``shard`` lives."""
    return manifest_dir / "parts" / f"{shard}.json"


def write_part(manifest_dir: Path, part: ShardPart) -> None:
    """Atomically write a shard's part file."""
    atomic_write_bytes(part_path(manifest_dir, part.record.shard), part.to_json())


def read_part(manifest_dir: Path, shard: str) -> ShardPart | None:
    """The part file of ``shard``, or None if there is none (or it is unreadable)."""
    path = part_path(manifest_dir, shard)
    try:
        return ShardPart.from_json(path.read_bytes())
    except (OSError, ValueError, KeyError, TypeError):
        return None
