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


def combine(parts: list[ShardPart], keys: set[str], fraction: float, seed: int) -> FeatureStats:
    """Merge the per-video sums of the chosen ``keys`` into mean and (population) std per filter."""
    moments = [part.moments[key] for part in parts for key in part.moments if key in keys]
    if not moments:
        raise ValueError("no ingested video in the stats subset")
    total = np.sum([m[0] for m in moments], axis=0)
    total_sq = np.sum([m[1] for m in moments], axis=0)
    frames = sum(m[2] for m in moments)
    videos = len(moments)
    mean = total / frames
    std = np.sqrt(np.maximum(total_sq / frames - mean**2, 0.0))
    return FeatureStats(mean=mean.tolist(), std=std.tolist(), frames=frames, videos=videos,
                        fraction=fraction, seed=seed)


def write_stats(path: Path, stats: FeatureStats) -> None:
    """Write ``stats.json`` atomically."""
    atomic_write_bytes(path, json.dumps(asdict(stats), indent=2).encode("utf-8"))
