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

from avts import storage
from avts.config_cli import option, validate
from avts.cpus import usable_cpus

ENGINES = ("auto", "ray", "processes")
MAX_SHORT_SIDE = 2160  # a 4K picture's short side; larger only makes every file fail later, as "too short"
READ_ONLY_PROTOCOLS = ("pipe", "http", "https")  # sources that can be read but not written to
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def as_location(folder: str | os.PathLike[str]) -> str:
    """An output folder as text: a URL unchanged, a local path (or ``file://`` URL) as a plain path."""
    folder = os.fspath(folder)
    return folder if storage.is_remote(folder) else str(storage.as_local_path(folder))


def same_location(first: str, second: str) -> bool:
    """Whether two output locations are the same folder (local paths compared resolved, URLs without a final /)."""
    if storage.is_remote(first) or storage.is_remote(second):
        return first.rstrip("/") == second.rstrip("/")
    return resolved(first) == resolved(second)


def resolved(path: str) -> Path:
    """``path`` made absolute with its links followed; as written (absolute) where they cannot be (a loop)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python 3.11's word for a symlink loop
        return Path(os.path.abspath(path))


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
    keep_without_audio: bool = False


@dataclass(frozen=True)
class ShardOutput:
    """Where a shard-writing worker puts the shard and its manifest part (local folders or URLs)."""

    out: str
    manifests: str


@dataclass(frozen=True)
class IngestConfig:
    """Everything `avts-ingest` needs; the command line builds one of these from the same fields."""

    src: Path = option(help="folder of videos, searched recursively (the first folder level is the label)")
    out: str = option(
        "shards",
        help="shard folder, or an object-store prefix such as s3://BUCKET/PREFIX/shards "
        "(endpoint and credentials from the standard AWS_* variables)",
    )
    manifests: str | None = option(None, help="manifest folder or URL (unset: manifests/ beside --out)")
    short_side: int = option(128, help="stored short side in pixels (even)")
    shard_size: int = option(256, help="videos per shard")
    val_fraction: float = option(
        0.05, help="share of videos in the validation split (by key hash; not used with --split-file)"
    )
    split_file: tuple[Path, ...] = option(
        factory=tuple,
        metavar="FILE",
        help="official split files of one split (UCF101 trainlistNN.txt and "
        "testlistNN.txt, or HMDB51's <class>_test_splitN.txt): they decide "
        "train (NNNN.tar) and test (test-NNNN.tar) shards; unlisted files "
        "are left out",
    )
    stats_fraction: float = option(0.20, help="share of the training videos whose features give the mean/std")
    seed: int = option(0, help="seed of the stats subset")
    min_duration: float = option(2.5, help="shortest video kept, in seconds (a 1-s clip plus a hard negative)")
    mp3: bool = option(False, help="MP3 round-trip of the audio before the features (Chung & Zisserman's path)")
    mp3_bitrate: int = option(64_000, help="MP3 bit rate of --mp3, bits/s")
    keep_truncated: bool = option(
        False,
        help="keep the decoded part of a truncated file, or of one that lost more "
        "than 0.5 s mid-file to undecodable data (recorded in the manifest), "
        "instead of failing it",
    )
    keep_without_audio: bool = option(
        False,
        help="keep videos with no audio stream or only silence, with silent "
        "features (for labelled sets fine-tuned on video, such as UCF101); "
        "avts-train skips them",
    )
    crf: int = option(23, help="x264 quality of the stored video (0-51, lower is better)")
    preset: str = option("veryfast", help="x264 speed preset of the stored video", choices=X264_PRESETS)
    workers: int = option(
        factory=usable_cpus, help="parallel workers (default: the CPUs this process may use, container quota included)"
    )
    threads_per_worker: int = option(1, help="decoder/encoder threads per worker")
    engine: str = option(
        "auto",
        help="auto: Ray when a cluster is named (--address or RAY_ADDRESS), else a local process pool; "
        "ray: Ray (an embedded local Ray without an address); processes: a local process pool",
        choices=ENGINES,
    )
    address: str | None = option(None, help="Ray cluster to join: auto or HOST:PORT (also RAY_ADDRESS)")
    max_in_flight: int | None = option(None, help="video tasks submitted at once (unset: 2 × workers)")
    task_retries: int = option(3, help="retries of a task whose worker died")
    overwrite: bool = option(False, help="delete this tool's earlier shards and manifests and start over")
    allow_other_files: bool = option(
        False, help="write into an --out that holds files avts-ingest did not write (they are left alone)"
    )
    plain: bool | None = option(
        None, help="plain progress lines instead of a bar (automatic without a terminal or with CI set)"
    )

    def __post_init__(self) -> None:
        validate([(os.fspath(self.out).strip() != "", "--out must not be empty (an unset variable?): name a folder")])
        # Kept as text: a URL must not go through Path (``s3://b`` would become ``s3:/b``); paths are accepted.
        object.__setattr__(self, "out", as_location(self.out))
        if self.manifests is not None:
            object.__setattr__(self, "manifests", as_location(self.manifests))
        validate(
            [
                (
                    16 <= self.short_side <= MAX_SHORT_SIDE and self.short_side % 2 == 0,
                    f"--short-side must be an even number in [16, {MAX_SHORT_SIDE}]",
                ),
                (self.shard_size >= 1, "--shard-size must be ≥ 1"),
                (0.0 <= self.val_fraction < 1.0, "--val-fraction must be in [0, 1)"),
                (0.0 < self.stats_fraction <= 1.0, "--stats-fraction must be in (0, 1]"),
                (self.min_duration > 0, "--min-duration must be > 0"),
                (self.workers >= 1, "--workers must be ≥ 1"),
                (self.threads_per_worker >= 1, "--threads-per-worker must be ≥ 1"),
                (self.engine in ENGINES, f"--engine must be one of {', '.join(ENGINES)}"),
                (
                    not (self.engine == "processes" and self.address),
                    "--address joins a Ray cluster: use it with --engine auto or ray, not processes",
                ),
                (self.preset in X264_PRESETS, f"--preset must be one of {', '.join(X264_PRESETS)}"),
                (0 <= self.crf <= 51, "--crf must be in [0, 51]"),
                (self.mp3_bitrate >= 8_000, "--mp3-bitrate must be ≥ 8000"),
                (self.max_in_flight is None or self.max_in_flight >= 1, "--max-in-flight must be ≥ 1"),
                (self.task_retries >= 0, "--task-retries must be ≥ 0"),
                *(
                    (
                        storage.protocol(folder) not in READ_ONLY_PROTOCOLS,
                        f"--out and --manifests must be folders or object-store URLs (s3://…), not {folder}",
                    )
                    for folder in (self.out, self.manifest_dir)
                ),
                (
                    not same_location(self.out, self.manifest_dir),
                    "--manifests must be another folder than --out (the shard folder holds only shards)",
                ),
                *(
                    (
                        not same_location(folder, str(self.src)),
                        f"{option} must be another folder than --src (a rerun would read its own output as input)",
                    )
                    for option, folder in (("--out", self.out), ("--manifests", self.manifest_dir))
                ),
                (
                    all(path.is_file() for path in self.split_file),
                    f"--split-file: no such file: {', '.join(str(p) for p in self.split_file if not p.is_file())}",
                ),
            ]
        )

    @property
    def manifest_dir(self) -> str:
        """Where the parquet manifests and stats.json go (a local path or a URL)."""
        return self.manifests if self.manifests is not None else storage.join(storage.parent(self.out), "manifests")

    @property
    def out_is_remote(self) -> bool:
        """Whether the shards go to object storage (a URL) rather than a local folder."""
        return storage.is_remote(self.out)

    @property
    def manifests_are_remote(self) -> bool:
        """Whether the manifests go to object storage (a URL) rather than a local folder."""
        return storage.is_remote(self.manifest_dir)

    def local_folders(self) -> tuple[Path, ...]:
        """The output folders that are local (those that can be locked and must not be read as input)."""
        return tuple(Path(folder) for folder in (self.out, self.manifest_dir) if not storage.is_remote(folder))

    @property
    def ray_address(self) -> str | None:
        """The Ray cluster named for this run (``--address``, else ``RAY_ADDRESS``), or None."""
        return self.address or os.environ.get("RAY_ADDRESS") or None

    @property
    def uses_ray(self) -> bool:
        """Whether the run goes to Ray: asked for, or ``auto`` with a cluster named. On one machine ``auto`` takes
        the process pool: same bytes, without the ~4 CPU-seconds and ~3 s an embedded Ray takes to start."""
        return self.engine == "ray" or (self.engine == "auto" and self.ray_address is not None)

    def engine_description(self) -> str:
        """Where the work runs, in words (for the summary)."""
        if not self.uses_ray:
            return f"process pool, {self.workers} worker{'s' * (self.workers != 1)}"
        if self.ray_address is None:
            return f"embedded local Ray, {self.workers} worker{'s' * (self.workers != 1)}"
        return f"Ray cluster at {self.ray_address}"

    @property
    def in_flight(self) -> int:
        """How many video tasks may run or wait at once (bounds memory)."""
        return self.max_in_flight or 2 * self.workers

    def encode_settings(self) -> EncodeSettings:
        """The part of the configuration a transcoding worker needs."""
        return EncodeSettings(
            self.short_side,
            self.crf,
            self.preset,
            self.mp3,
            self.mp3_bitrate,
            self.min_duration,
            self.threads_per_worker,
            self.keep_truncated,
            self.keep_without_audio,
        )

    def shard_output(self) -> ShardOutput:
        """The part of the configuration a shard-writing worker needs."""
        return ShardOutput(self.out, self.manifest_dir)

    def content_settings(self) -> dict[str, Any]:
        """The settings that decide shard contents: a rerun resumes only if these match."""
        keep = (
            "short_side",
            "shard_size",
            "val_fraction",
            "stats_fraction",
            "seed",
            "min_duration",
            "mp3",
            "mp3_bitrate",
            "crf",
            "preset",
        )
        values = asdict(self)
        settings = {name: values[name] for name in keep}
        if self.threads_per_worker != 1:  # x264 with threads encodes other bytes; absent at 1 (older runs resume)
            settings["threads_per_worker"] = self.threads_per_worker
        if self.keep_truncated:  # absent when off, so runs from before the option resume
            settings["keep_truncated"] = True
        if self.keep_without_audio:
            settings["keep_without_audio"] = True
        if self.split_file:  # the files' content, not their paths; absent without split files (older runs resume)
            settings["split_files"] = sorted(hashlib.sha256(path.read_bytes()).hexdigest() for path in self.split_file)
        return settings
