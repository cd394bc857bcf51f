"""Normalization statistics: per-filter mean and std over the seeded stats subset, from features already made."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.manifest import ShardPart
from pipeline.writer import atomic_write_bytes


@dataclass(frozen=True)
class FeatureStats:
    """What ``stats.json`` holds; the trainer Z-normalizes audio features with ``mean`` and ``std``."""

    mean: list[float]
    std: list[float]
    frames: int
    videos: int
    fraction: float
    seed: int

    @classmethod
    def load(cls, path: Path) -> "FeatureStats":
        """Read ``stats.json``."""
        return cls(**json.loads(path.read_text()))


def combine(parts: list[ShardPart], videos: int, fraction: float, seed: int) -> FeatureStats:
    """Merge the per-shard sums into mean and (population) standard deviation per filter."""
    with_frames = [part for part in parts if part.fbank_frames]
    if not with_frames:
        raise ValueError("no feature frames in the stats subset: nothing was ingested from it")
    total = np.sum([part.fbank_sum for part in with_frames], axis=0)
    total_sq = np.sum([part.fbank_sumsq for part in with_frames], axis=0)
    frames = sum(part.fbank_frames for part in with_frames)
    mean = total / frames
    std = np.sqrt(np.maximum(total_sq / frames - mean**2, 0.0))
    return FeatureStats(mean=mean.tolist(), std=std.tolist(), frames=frames, videos=videos,
                        fraction=fraction, seed=seed)


def write_stats(path: Path, stats: FeatureStats) -> None:
    """Write ``stats.json`` atomically."""
    atomic_write_bytes(path, json.dumps(asdict(stats), indent=2).encode("utf-8"))
