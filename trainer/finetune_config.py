"""The configuration of `avts-finetune`; its flags are made from these fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avts.config_cli import option, validate
from trainer.config import VIDEO_ARCHS, LoopSettings
from trainer.models import MODALITIES, ModelSpec

SCRATCH = "scratch"
ARCHITECTURE_FLAGS = ("arch", "width", "audio_width", "video_time_bins", "audio_time_bins")


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig(LoopSettings):
    """Everything `avts-finetune` needs; written to the run folder and printed at start."""

    shards: str = option(
        help="labeled training shards (avts-ingest of class folders): a folder (its NNNN.tar), "
        "a brace pattern, a list file or URLs; comma-separated parts allowed"
    )
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
    test_clips: int = option(10, help="evenly spaced 1-s clips per test video; the video's scores are their mean")
    eval_every: int = option(1, help="epochs between test evaluations (the last epoch is always evaluated)")

    def __post_init__(self) -> None:
        super().__post_init__()
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
                (self.batch_size >= 2, "--batch-size must be ≥ 2 (batch normalization needs two clips)"),
                (0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
                (
                    all(size is None or size >= 1 for size in (self.width, self.audio_width)),
                    "--width and --audio-width must be ≥ 1",
                ),
                (self.test_clips >= 1, "--test-clips must be ≥ 1"),
                (self.eval_every >= 1, "--eval-every must be ≥ 1"),
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
