"""The configuration of `avts-finetune`; its flags are made from these fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avts.config_cli import option, validate
from trainer.config import OPTIMIZERS, VIDEO_ARCHS
from trainer.models import MODALITIES, ModelSpec

SCRATCH = "scratch"
ARCHITECTURE_FLAGS = ("arch", "width", "audio_width", "video_time_bins", "audio_time_bins")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything `avts-finetune` needs; written to the run folder and printed at start."""

    shards: str = option(
        help="labeled training shards (avts-ingest of class folders): a folder (its NNNN.tar), "
        "a brace pattern, a list file or URLs; comma-separated parts allowed"
    )
    out: Path = option(help="run folder (config, metrics, checkpoints, plots, results.json)")
    init: str = option(
        help="'scratch' (random weights), or an avts-train checkpoint whose subnets start the classifier"
    )
    test_shards: str | None = option(
        None, help="test shards (unset: test-*.tar beside --shards, as avts-ingest --split-file writes them)"
    )
    modality: str = option(
        "video",
        choices=MODALITIES,
        help="video (§3.3), audio, or audiovisual: both subnets, concatenated features → FC 512 → FC C (§3.5)",
    )
    classes: Path | None = option(
        None,
        help="class list, one name per line (unset: the labels of the training "
        "videos in manifests/videos.parquet beside the shards, sorted)",
    )
    stats: str | None = option(
        None,
        help="feature stats.json (path or URL) for --init scratch (unset: "
        "manifests/stats.json beside the shards); a checkpoint brings its own",
    )
    epochs: int = option(30, help="epochs (the paper does not say)")
    batch_size: int = option(16, help="clips per GPU/process")
    optimizer: str = option("sgd", help="sgd (with momentum) or adam", choices=OPTIMIZERS)
    lr: float = option(0.01, help="initial learning rate (the paper does not give it)")
    momentum: float = option(0.9, help="SGD momentum")
    weight_decay: float = option(1e-4, help="L2 weight decay")
    plateau_patience: int = option(5, help="epochs without a loss decrease before the LR is cut")
    lr_factor: float = option(0.1, help="LR multiplier at a plateau")
    dropout: float = option(0.0, help="dropout before the classification head (the paper mentions none)")
    arch: str | None = option(
        None,
        choices=VIDEO_ARCHS,
        help="video subnet for --init scratch (unset: mc3; with a "
        "checkpoint: its own, and a different value is an error)",
    )
    width: int | None = option(None, help="video subnet base width for --init scratch (unset: 64)")
    audio_width: int | None = option(None, help="audio subnet base width for --init scratch (unset: 64)")
    video_time_bins: int | None = option(
        None, help="time bins of the video subnet's last pooling for --init scratch (unset: 1)"
    )
    audio_time_bins: int | None = option(
        None, help="time bins of the audio subnet's pool6 for --init scratch (unset: 5)"
    )
    crop_size: int = option(112, help="side of the square crop fed to the video subnet")
    crop_scales: tuple[float, ...] = option(
        (1.0, 0.875, 0.75, 0.66), help="multi-scale crop sides for training, as fractions of the short side"
    )
    test_clips: int = option(10, help="evenly spaced 1-s clips per test video; the video's scores are their mean")
    eval_every: int = option(1, help="epochs between test evaluations (the last epoch is always evaluated)")
    shuffle_buffer: int = option(500, help="samples in the shuffle buffer")
    workers: int = option(4, help="DataLoader workers per process")
    epoch_size: int | None = option(None, help="samples per epoch over all ranks; streams resampled shards when set")
    ckpt_every: int = option(500, help="steps between mid-epoch checkpoints")
    keep_checkpoints: int = option(2, help="epoch checkpoints kept")
    max_bad_steps: int = option(5, help="steps with a non-finite loss or gradient skipped before training stops")
    resume: bool = option(False, help="continue the run in --out from its last checkpoint")
    compile: bool = option(False, help="torch.compile the model")
    seed: int = option(0, help="seed of the head's weights (and of scratch weights), shuffles and augmentation")
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
                (
                    self.init == SCRATCH or Path(self.init).is_file(),
                    f"--init: no checkpoint file at {self.init} (pass an avts-train checkpoint, or 'scratch')",
                ),
                (
                    self.stats is None or self.init == SCRATCH,
                    "--stats is for --init scratch: a checkpoint's audio normalization is the one its subnets "
                    "learned with",
                ),
                (self.epochs >= 1, "--epochs must be ≥ 1"),
                (self.batch_size >= 2, "--batch-size must be ≥ 2 (batch normalization needs two clips)"),
                (self.lr > 0, "--lr must be > 0"),
                (0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
                (self.crop_size >= 16, "--crop-size must be ≥ 16"),
                (all(0 < scale <= 1 for scale in self.crop_scales), "--crop-scales must lie in (0, 1]"),
                (self.test_clips >= 1, "--test-clips must be ≥ 1"),
                (self.eval_every >= 1, "--eval-every must be ≥ 1"),
                (self.workers >= 0, "--workers must be ≥ 0"),
                (self.keep_checkpoints >= 1, "--keep-checkpoints must be ≥ 1"),
                (self.max_bad_steps >= 0, "--max-bad-steps must be ≥ 0"),
                (self.log_every >= 1, "--log-every must be ≥ 1"),
                (self.epoch_size is None or self.epoch_size >= self.batch_size, "--epoch-size must be ≥ --batch-size"),
            ]
        )

    def scratch_spec(self) -> ModelSpec:
        """The backbone of ``--init scratch``: the architecture flags, ModelSpec's defaults where unset."""
        given = {name: getattr(self, name) for name in ARCHITECTURE_FLAGS if getattr(self, name) is not None}
        return ModelSpec(**given)

    def architecture_conflicts(self, spec: ModelSpec) -> list[str]:
        """The architecture flags that ask for something else than a checkpoint's ``spec`` holds."""
        return [
            f"--{name.replace('_', '-')} {getattr(self, name)} (the checkpoint's: {getattr(spec, name)})"
            for name in ARCHITECTURE_FLAGS
            if getattr(self, name) is not None and getattr(self, name) != getattr(spec, name)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
