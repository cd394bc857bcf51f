"""`avts-train`: a thin command-line shell over :func:`trainer.train.train`."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from avts.config_cli import add_config_arguments, config_from_args
from trainer.config import TrainConfig
from trainer.train import TrainError, train


def parse_args(argv: list[str] | None) -> TrainConfig:
    """Command-line flags → :class:`TrainConfig` (one flag per field, defaults from the dataclass)."""
    parser = argparse.ArgumentParser(
        prog="avts-train",
        description="Train the AVTS two-stream network from avts-ingest shards (one GPU, or many under torchrun).")
    add_config_arguments(parser, TrainConfig)
    return config_from_args(TrainConfig, parser.parse_args(argv), parser)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avts-train`; returns the process exit status."""
    config = parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    try:
        result = train(config, console)
    except (TrainError, FileNotFoundError) as error:
        console.print(f"[bold red]avts-train: {error}")
        return 1
    console.print(f"done: {result.global_step} steps; run folder {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
