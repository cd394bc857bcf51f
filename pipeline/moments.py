"""Normalization statistics from features already made: per-video sums, merged over the seeded stats subset."""

from __future__ import annotations

import numpy as np

from avts.stats import FeatureStats
from pipeline.manifest import Moments, ShardPart


def fbank_moments(fbank: np.ndarray) -> Moments:
    """Per-filter sum, sum of squares and frame count of one video's features (computed in float64)."""
    values = fbank.astype(np.float64)
    return values.sum(axis=0).tolist(), np.square(values).sum(axis=0).tolist(), len(values)


def combine(parts: list[ShardPart], keys: set[str], fraction: float, seed: int) -> FeatureStats:
    """Merge the per-video sums of the chosen ``keys`` into mean and (population) std per filter."""
    moments = [part.moments[key] for part in parts for key in part.moments if key in keys]
    if not moments:
        raise ValueError("no ingested video in the stats subset")
    total = np.sum([m[0] for m in moments], axis=0)
    total_sq = np.sum([m[1] for m in moments], axis=0)
    frames = sum(m[2] for m in moments)
    mean = total / frames
    std = np.sqrt(np.maximum(total_sq / frames - mean**2, 0.0))
    return FeatureStats(
        mean=mean.tolist(), std=std.tolist(), frames=frames, videos=len(moments), fraction=fraction, seed=seed
    )
