"""The one configuration object of the training stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

OBJECTIVES = ("contrastive", "ce")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `avts-train` needs; written to the run folder and printed at start."""

    shards: str
    out: Path
    val_shards: str | None = None  # default: val-*.tar beside the training shards
    stats: Path | None = None  # default: manifests/stats.json beside the shard folder
    epochs: int = 90
    batch_size: int = 16  # per GPU / process
    optimizer: str = "sgd"  # "sgd" (the paper's, with momentum) or "adam"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    margin: float = 0.99
    plateau_patience: int = 5
    lr_factor: float = 0.1
    curriculum: str | None = None  # default: the paper's schedule scaled to `epochs`
    hard_gap_s: float = 0.5
    super_hard_offset_s: float = 0.5
    objective: str = "contrastive"  # "ce": the second stage of §3.2 (two FC layers, cross-entropy)
    init_from: Path | None = None  # weights to start from (e.g. a contrastive run for the CE stage)
    video_arch: str = "mc3"
    width: int = 64
    audio_width: int = 64
    embed_dim: int = 128
    video_time_bins: int = 1  # 1 = MC3's global pooling; more keeps timing in the video embedding
    audio_time_bins: int = 5  # time bins of the audio subnet's pool6 (SyncNet-like span)
    embedding_norm: str = "l2"  # "l2" or "none"
    clip_frames: int = 25
    crop_size: int = 112
    crop_scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    audio_context_s: float = 10.0  # audio features shipped per sample around the clip
    shuffle_buffer: int = 500
    workers: int = 4  # DataLoader workers per process
    epoch_size: int | None = None  # samples per epoch over all ranks: resampled shards when set
    val_clips: int = 4  # clips per validation video
    ckpt_every: int = 500  # steps
    keep_checkpoints: int = 2
    resume: bool = False
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    audit: bool = False  # write audit-rank<r>.jsonl: keys read and a weight checksum per epoch
    plain_progress: bool | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "--epochs must be ≥ 1"),
            (self.batch_size >= 2, "--batch-size must be ≥ 2 (easy negatives come from other videos of the batch)"),
            (self.objective in OBJECTIVES, f"--objective must be one of {OBJECTIVES}"),
            (self.optimizer in ("sgd", "adam"), "--optimizer must be sgd or adam"),
            (self.crop_size >= 16, "--crop-size must be ≥ 16"),
            (self.audio_context_s >= 2.5, "--audio-context must be ≥ 2.5 s to host hard negatives"),
            (self.clip_frames == 25, "clips are 25 frames (1 s at 25 fps): the audio window is 1 s"),
            (self.workers >= 0, "--workers must be ≥ 0"),
            (self.val_clips >= 1, "--val-clips must be ≥ 1"),
            (self.embedding_norm in ("l2", "none"), "--embedding-norm must be l2 or none"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
