"""`avts-features`: per-clip features of a trained AVTS model for media files (see :mod:`trainer.downstream.features`).

    avts-features --checkpoint runs/k/checkpoints/last.pt --src ESC-50-master/meta/esc50.csv --out esc50.parquet
    avts-features --checkpoint last.pt --src dcase2014/ --subclips 60 --out dcase.parquet
    avts-features --checkpoint last.pt --src UCF-101/ --modality video --clips 10 --out ucf101-video.parquet

Exit status: 0 when at least one file gave features, 1 with a clear message when none did (the reasons are in
``<out stem>.skipped.json``) or the checkpoint or source cannot be used, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console

from avts.config_cli import add_config_arguments, config_from_args
from avts.console import USER_ERRORS, error_console, interruptible, report_failure
from trainer.checkpoint import CheckpointError
from trainer.downstream.avts_eval import EvalError, load_model, pick_device
from trainer.downstream.features import FeaturesConfig, FeaturesError, extract_features
from trainer.downstream.labeled_audio import LayoutError

TOOL = "avts-features"


def parse_args(argv: list[str] | None) -> FeaturesConfig:
    """Command-line flags → :class:`FeaturesConfig` (one flag per field, defaults from the dataclass)."""
    parser = argparse.ArgumentParser(
        prog=TOOL,
        description="Features of a trained AVTS model for any media files, one parquet row per clip: conv5 of the "
        "audio subnet on 2-s sub-clips (§3.4), or pooled conv5 of the video subnet on 1-s clips.",
    )
    add_config_arguments(parser, FeaturesConfig)
    return config_from_args(FeaturesConfig, parser.parse_args(argv), parser)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avts-features`; returns the exit status."""
    config = parse_args(argv)
    return interruptible(
        TOOL, "the features are written only at the end; rerun the same command", lambda: run_command(config)
    )


def run_command(config: FeaturesConfig) -> int:
    """The command's work once its flags are parsed; returns the exit status."""
    console = error_console()
    started = time.monotonic()
    try:
        device = pick_device(config.device)
        trained = load_model(config.checkpoint, device)
        summary = extract_features(config, trained, device, console)
    except (FeaturesError, EvalError, CheckpointError, LayoutError, *USER_ERRORS) as error:
        return report_failure(console, TOOL, error)
    for item in summary.skipped:
        console.print(f"skipped {item['path']}: {item['reason']}", highlight=False, markup=False)
    if not summary.written:
        return report_failure(
            console,
            TOOL,
            FeaturesError(f"no file gave features ({len(summary.skipped)} skipped; reasons in {config.skipped_path})"),
        )
    padded = f", {len(summary.padded)} padded to one 2-s window" if config.modality == "audio" else ""
    Console().print(
        f"{summary.files} files → {summary.rows} rows of {summary.feature_dim} {config.modality} "
        f"features ({len(summary.skipped)} skipped{padded}) in {time.monotonic() - started:.1f} s; "
        f"features: {config.out}; skipped files: {config.skipped_path}",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
