"""The one configuration object of the ingestion stage."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENGINES = ("ray", "processes")


@dataclass(frozen=True)
class IngestConfig:
    """Everything `avts-ingest` needs; the CLI builds one of these and nothing else."""

    src: Path
    out: Path
    manifests: Path | None = None  # default: a `manifests/` folder beside `out`
    short_side: int = 128
    shard_size: int = 256  # videos per shard
    val_fraction: float = 0.05
    stats_fraction: float = 0.20
    seed: int = 0
    min_duration_s: float = 2.5
    mp3: bool = False
    mp3_bitrate: int = 64_000
    crf: int = 23
    x264_preset: str = "veryfast"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    threads_per_worker: int = 1
    engine: str = "ray"
    address: str | None = None  # Ray cluster to join ("auto", "HOST:PORT"); None = local Ray
    max_in_flight: int | None = None  # shard tasks in flight; default 2 × workers
    task_retries: int = 3
    overwrite: bool = False
    plain_progress: bool | None = None  # None: plain lines when not on a TTY or when CI is set

    def __post_init__(self) -> None:
        checks = [
            (self.short_side >= 16 and self.short_side % 2 == 0, "--short-side must be an even number ≥ 16"),
            (self.shard_size >= 1, "--shard-size must be ≥ 1"),
            (0.0 <= self.val_fraction < 1.0, "--val-fraction must be in [0, 1)"),
            (0.0 < self.stats_fraction <= 1.0, "--stats-fraction must be in (0, 1]"),
            (self.min_duration_s > 0, "--min-duration must be > 0"),
            (self.workers >= 1, "--workers must be ≥ 1"),
            (self.engine in ENGINES, f"--engine must be one of {ENGINES}"),
            (0 <= self.crf <= 51, "--crf must be in [0, 51]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def manifest_dir(self) -> Path:
        """Where the parquet manifests and stats.json go."""
        return self.manifests if self.manifests is not None else self.out.parent / "manifests"

    @property
    def in_flight(self) -> int:
        """How many shard tasks may run or wait at once (bounds memory)."""
        return self.max_in_flight or 2 * self.workers

    def content_settings(self) -> dict[str, Any]:
        """The settings that decide shard contents: a rerun resumes only if these match."""
        keep = ("short_side", "shard_size", "val_fraction", "stats_fraction", "seed", "min_duration_s",
                "mp3", "mp3_bitrate", "crf", "x264_preset")
        values = asdict(self)
        return {name: values[name] for name in keep}
