"""Settings of the ingestion stage: the job's configuration, and the narrow parts each worker receives.

:class:`IngestConfig` is the whole job (what the command line sets; the driver alone reads it).
Workers get only what they use: :class:`EncodeSettings` to turn one video into a sample, and
:class:`ShardOutput` to write a shard and its manifest part.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avts.config_cli import option, validate

ENGINES = ("ray", "processes")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class EncodeSettings:
    """How one video becomes a sample (what a transcoding worker needs, and nothing else)."""

    short_side: int
    crf: int
    preset: str
    mp3: bool
    mp3_bitrate: int
    min_duration: float
    threads: int
    keep_truncated: bool = False


@dataclass(frozen=True)
class ShardOutput:
    """Where a shard-writing worker puts the shard and its manifest part."""

    out: Path
    manifests: Path


@dataclass(frozen=True)
class IngestConfig:
    """Everything `avts-ingest` needs; the command line builds one of these from the same fields."""

    src: Path = option(help="folder of videos, searched recursively (the first folder level is the label)")
    out: Path = option(Path("shards"), help="shard folder")
    manifests: Path | None = option(None, help="manifest folder (unset: manifests/ beside --out)")
    short_side: int = option(128, help="stored short side in pixels (even)")
    shard_size: int = option(256, help="videos per shard")
    val_fraction: float = option(0.05, help="share of videos in the validation split (by key hash; not used with "
                                            "--split-file)")
    split_file: tuple[Path, ...] = option(factory=tuple, metavar="FILE",
                                          help="official split files of one split (UCF101 trainlistNN.txt and "
                                               "testlistNN.txt, or HMDB51's <class>_test_splitN.txt): they decide "
                                               "train (NNNN.tar) and test (test-NNNN.tar) shards; unlisted files "
                                               "are left out")
    stats_fraction: float = option(0.20, help="share of the training videos whose features give the mean/std")
    seed: int = option(0, help="seed of the stats subset")
    min_duration: float = option(2.5, help="shortest video kept, in seconds (a 1-s clip plus a hard negative)")
    mp3: bool = option(False, help="MP3 round-trip of the audio before the features (Chung & Zisserman's path)")
    mp3_bitrate: int = option(64_000, help="MP3 bit rate of --mp3, bits/s")
    keep_truncated: bool = option(False, help="keep the decoded part of a truncated file, or of one that lost more "
                                              "than 0.5 s mid-file to undecodable data (recorded in the manifest), "
                                              "instead of failing it")
    crf: int = option(23, help="x264 quality of the stored video (0-51, lower is better)")
    preset: str = option("veryfast", help="x264 speed preset of the stored video", choices=X264_PRESETS)
    workers: int = option(factory=lambda: os.cpu_count() or 1, help="parallel workers (default: cores)")
    threads_per_worker: int = option(1, help="decoder/encoder threads per worker")
    engine: str = option("ray", help="ray (local, or a cluster with --address) or processes (a local pool)",
                         choices=ENGINES)
    address: str | None = option(None, help="Ray cluster to join: auto or HOST:PORT (also RAY_ADDRESS)")
    max_in_flight: int | None = option(None, help="video tasks submitted at once (unset: 2 × workers)")
    task_retries: int = option(3, help="retries of a task whose worker died")
    overwrite: bool = option(False, help="delete this tool's earlier shards and manifests and start over")
    allow_other_files: bool = option(False, help="write into an --out that holds files avts-ingest did not write "
                                                 "(they are left alone)")
    plain: bool | None = option(None, help="plain progress lines instead of a bar (automatic without a terminal "
                                           "or with CI set)")

    def __post_init__(self) -> None:
        validate([
            (self.short_side >= 16 and self.short_side % 2 == 0, "--short-side must be an even number ≥ 16"),
            (self.shard_size >= 1, "--shard-size must be ≥ 1"),
            (0.0 <= self.val_fraction < 1.0, "--val-fraction must be in [0, 1)"),
            (0.0 < self.stats_fraction <= 1.0, "--stats-fraction must be in (0, 1]"),
            (self.min_duration > 0, "--min-duration must be > 0"),
            (self.workers >= 1, "--workers must be ≥ 1"),
            (self.threads_per_worker >= 1, "--threads-per-worker must be ≥ 1"),
            (self.engine in ENGINES, f"--engine must be one of {', '.join(ENGINES)}"),
            (self.preset in X264_PRESETS, f"--preset must be one of {', '.join(X264_PRESETS)}"),
            (0 <= self.crf <= 51, "--crf must be in [0, 51]"),
            (self.mp3_bitrate >= 8_000, "--mp3-bitrate must be ≥ 8000"),
            (self.max_in_flight is None or self.max_in_flight >= 1, "--max-in-flight must be ≥ 1"),
            (self.task_retries >= 0, "--task-retries must be ≥ 0"),
            (all(path.is_file() for path in self.split_file),
             f"--split-file: no such file: {', '.join(str(p) for p in self.split_file if not p.is_file())}"),
        ])

    @property
    def manifest_dir(self) -> Path:
        """Where the parquet manifests and stats.json go."""
        return self.manifests if self.manifests is not None else self.out.parent / "manifests"

    @property
    def in_flight(self) -> int:
        """How many video tasks may run or wait at once (bounds memory)."""
        return self.max_in_flight or 2 * self.workers

    def encode_settings(self) -> EncodeSettings:
        """The part of the configuration a transcoding worker needs."""
        return EncodeSettings(self.short_side, self.crf, self.preset, self.mp3, self.mp3_bitrate, self.min_duration,
                              self.threads_per_worker, self.keep_truncated)

    def shard_output(self) -> ShardOutput:
        """The part of the configuration a shard-writing worker needs."""
        return ShardOutput(self.out, self.manifest_dir)

    def content_settings(self) -> dict[str, Any]:
        """The settings that decide shard contents: a rerun resumes only if these match."""
        keep = ("short_side", "shard_size", "val_fraction", "stats_fraction", "seed", "min_duration",
                "mp3", "mp3_bitrate", "crf", "preset")
        values = asdict(self)
        settings = {name: values[name] for name in keep}
        if self.keep_truncated:  # absent when off, so runs from before the option resume
            settings["keep_truncated"] = True
        if self.split_file:  # the files' content, not their paths; absent without split files (older runs resume)
            settings["split_files"] = sorted(hashlib.sha256(path.read_bytes()).hexdigest() for path in self.split_file)
        return settings
