"""The one configuration object of the training stage; `avts-train`'s flags are made from its fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avts.config_cli import option, validate
from trainer.curriculum import curriculum_check
from trainer.distributed import device_check
from trainer.models import ModelSpec

OBJECTIVES = ("contrastive", "ce")
OPTIMIZERS = ("sgd", "adam")
VIDEO_ARCHS = ("mc2", "mc3", "mc4", "mc5")


@dataclass(frozen=True, kw_only=True)
class LoopSettings:
    """The settings of the training loop (``trainer/train.py``) that `avts-train` and `avts-finetune` share,
    declared once; each tool's configuration adds its own (and may set another default, as ``epochs``)."""

    out: Path = option(help="run folder (config, metrics, checkpoints, plots)")
    epochs: int = option(30, help="epochs (for fine-tuning, the paper does not say how many)")
    batch_size: int = option(16, help="clips per GPU/process (the paper's 16)")
    optimizer: str = option("sgd", help="sgd (with momentum) or adam", choices=OPTIMIZERS)
    lr: float = option(0.01, help="initial learning rate (the paper grid-searched it and does not give it)")
    momentum: float = option(0.9, help="SGD momentum")
    weight_decay: float = option(1e-4, help="L2 weight decay")
    plateau_patience: int = option(5, help="epochs without a loss decrease before the LR is cut (§3.1: 5)")
    lr_factor: float = option(0.1, help="LR multiplier at a plateau (§3.1: 0.1)")
    crop_size: int = option(112, help="side of the square crop fed to the video subnet")
    crop_scales: tuple[float, ...] = option(
        (1.0, 0.875, 0.75, 0.66), help="multi-scale crop sides for training, as fractions of the short side"
    )
    shuffle_buffer: int = option(500, help="samples in the shuffle buffer")
    workers: int = option(4, help="DataLoader workers per process")
    epoch_size: int | None = option(None, help="samples per epoch over all ranks; streams resampled shards when set")
    ckpt_every: int = option(500, help="steps between mid-epoch checkpoints (0: at epoch ends only)")
    keep_checkpoints: int = option(2, help="epoch checkpoints kept")
    max_bad_steps: int = option(5, help="steps with a non-finite loss or gradient skipped before training stops")
    resume: bool = option(False, help="continue the run in --out from its last checkpoint")
    compile: bool = option(False, help="torch.compile the model")
    seed: int = option(0, help="seed of the weights, shuffles, augmentation and pair draws")
    device: str = option("auto", help="auto, cuda or cpu")
    dist_timeout: float = option(
        1800.0,
        help="seconds a rank waits for a silent peer (a frozen node) before the job fails and torchrun can restart it",
    )
    log_every: int = option(10, help="steps between metric records")
    audit: bool = option(False, help="write audit-rank<r>.jsonl per epoch: sample keys read and a weight checksum")
    plain: bool | None = option(
        None, help="plain progress lines instead of a bar (automatic without a terminal or with CI set)"
    )

    def __post_init__(self) -> None:
        validate(
            [
                device_check(self.device),
                (self.epochs >= 1, "--epochs must be ≥ 1"),
                (self.lr > 0, "--lr must be > 0"),
                (self.crop_size >= 16, "--crop-size must be ≥ 16"),
                (all(0 < scale <= 1 for scale in self.crop_scales), "--crop-scales must lie in (0, 1]"),
                (self.workers >= 0, "--workers must be ≥ 0"),
                (self.ckpt_every >= 0, "--ckpt-every must be ≥ 0 (0: checkpoints at epoch ends only)"),
                (self.keep_checkpoints >= 1, "--keep-checkpoints must be ≥ 1"),
                (self.max_bad_steps >= 0, "--max-bad-steps must be ≥ 0"),
                (self.plateau_patience >= 0, "--plateau-patience must be ≥ 0"),
                (0 < self.lr_factor <= 1, "--lr-factor must be in (0, 1]"),
                (self.log_every >= 1, "--log-every must be ≥ 1"),
                (self.epoch_size is None or self.epoch_size >= self.batch_size, "--epoch-size must be ≥ --batch-size"),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True, kw_only=True)
class TrainConfig(LoopSettings):
    """Everything `avts-train` needs; written to the run folder and printed at start."""

    shards: str = option(
        help="training shards: 'shards/{0000..2047}.tar', 'shards/<0000..2047>.tar', a folder, "
        "a list file, or URLs (s3://BUCKET/PREFIX/{0000..2047}.tar or a prefix ending in /, "
        "http(s)://, pipe:); comma-separated parts allowed"
    )
    val_shards: str | None = option(None, help="validation shards (unset: val-*.tar beside --shards)")
    stats: str | None = option(
        None,
        help="feature stats.json, a path or URL (unset: the stats.json of the "
        "manifests the shard folder names, else manifests/ beside it)",
    )
    epochs: int = option(90, help="epochs (the paper's 90)")
    margin: float = option(0.99, help="contrastive margin η of Eq. 1")
    curriculum: str | None = option(
        None,
        help="negative mixes by epoch, e.g. '0:easy=1;50:easy=0.75,hard=0.25' (unset: the paper's, scaled to --epochs)",
    )
    hard_gap: float = option(0.5, help="seconds between a hard negative's audio and the clip")
    super_hard_offset: float = option(0.5, help="shift of super-hard negatives, seconds")
    objective: str = option(
        "contrastive",
        help="contrastive (Eq. 1) or ce: the two-FC-layer cross-entropy stage of §3.2",
        choices=OBJECTIVES,
    )
    init_from: Path | None = option(None, help="checkpoint to start the weights from (e.g. for --objective ce)")
    arch: str = option("mc3", help="video subnet", choices=VIDEO_ARCHS)
    width: int = option(64, help="video subnet base width (64 = mc3_18 size)")
    audio_width: int = option(64, help="audio subnet base width")
    embed_dim: int = option(128, help="embedding size of both streams")
    video_time_bins: int = option(
        1, help="time bins kept by the video subnet's last pooling (1 = MC3's global average)"
    )
    audio_time_bins: int = option(5, help="time bins of the audio subnet's pool6")
    embedding_norm: str = option(
        "l2", help="l2: normalize embeddings so the margin has a fixed scale; or none", choices=("l2", "none")
    )
    audio_context: float = option(10.0, help="seconds of audio features shipped around each clip")
    val_clips: int = option(4, help="evenly spaced clips per validation video")

    def __post_init__(self) -> None:
        super().__post_init__()
        validate(
            [
                (self.batch_size >= 2, "--batch-size must be ≥ 2 (easy negatives come from other videos of the batch)"),
                (self.margin > 0, "--margin must be > 0"),
                (
                    min(self.width, self.audio_width, self.embed_dim) >= 1,
                    "--width, --audio-width and --embed-dim must be ≥ 1",
                ),
                (self.audio_context >= 2.5, "--audio-context must be ≥ 2.5 s to host hard negatives"),
                (self.val_clips >= 1, "--val-clips must be ≥ 1"),
                curriculum_check(self.curriculum),
            ]
        )

    def model_spec(self) -> ModelSpec:
        """The shape of the model this configuration trains."""
        return ModelSpec(
            arch=self.arch,
            width=self.width,
            audio_width=self.audio_width,
            embed_dim=self.embed_dim,
            video_time_bins=self.video_time_bins,
            audio_time_bins=self.audio_time_bins,
            embedding_norm=self.embedding_norm,
            sync_head=self.objective == "ce",
        )
