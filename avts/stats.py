"""The normalization statistics file (``stats.json``): per-filter mean and std of the audio features.

Written by `avts-ingest` from a seeded share of the training videos; read by `avts-train` to Z-normalize
audio, and stored inside every checkpoint so that a trained model carries the normalization it learned with.
The file may be a local path or a URL (``s3://bucket/run/manifests/stats.json``, see :mod:`avts.storage`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avts import storage


class StatsError(ValueError):
    """A stats file that is not one avts-ingest wrote."""


@dataclass(frozen=True)
class FeatureStats:
    """What ``stats.json`` holds."""

    mean: list[float]
    std: list[float]
    frames: int
    videos: int
    fraction: float
    seed: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureStats:
        """Build from the decoded JSON (extra keys a newer writer added are ignored)."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        """Read ``stats.json`` (a path or URL); a file that is not one is a :class:`StatsError` naming it."""
        try:
            return cls.from_dict(json.loads(storage.read_text(path)))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise StatsError(f"{path} is not a stats.json written by avts-ingest ({type(error).__name__})") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready content."""
        return asdict(self)

    def save(self, path: str | Path) -> None:
        """Write ``stats.json`` (a path or URL) atomically."""
        storage.write_bytes_atomic(path, json.dumps(self.to_dict(), indent=2).encode("utf-8"))
