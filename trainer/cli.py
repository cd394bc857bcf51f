"""`avts-train`: a thin command-line shell over :func:`trainer.train.train`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from rich.console import Console

from avts.config_cli import add_config_arguments, config_from_args
from avts.console import USER_ERRORS, error_console, report_failure, report_interrupt
from avts.interrupts import terminate_as_interrupt
from trainer.config import LoopSettings, TrainConfig
from trainer.recipes import RECIPES, get_recipe
from trainer.train import TrainError, train

Config = TypeVar("Config", bound=LoopSettings)


def parse_args(argv: list[str] | None) -> TrainConfig:
    """Command-line flags → :class:`TrainConfig` (one flag per field, defaults from the dataclass).

    ``--recipe NAME`` replaces some defaults by a named preset (:mod:`trainer.recipes`); flags given
    explicitly still win: explicit flag > recipe > dataclass default.
    """
    parser = argparse.ArgumentParser(
        prog="avts-train",
        description="Train the AVTS two-stream network from avts-ingest shards (one GPU, or many under torchrun).",
    )
    recipes = "; ".join(f"{recipe.name}: {recipe.purpose}" for recipe in RECIPES.values())
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help=f"named preset applied over the defaults; explicit flags win (trainer/recipes.py: {recipes})",
    )
    add_config_arguments(parser, TrainConfig)
    chosen, _ = parser.parse_known_args(argv)
    if chosen.recipe is not None:
        parser.set_defaults(**get_recipe(chosen.recipe).settings)
    return config_from_args(TrainConfig, parser.parse_args(argv), parser)


class Finished(Protocol):
    """What a training command reports at its end."""

    global_step: int
    run_dir: Path


def run_command(tool: str, job: Callable[[Config, Console], Finished], config: Config) -> int:
    """Run a training ``job`` (`avts-train`, `avts-finetune`) as a command: one line for a failure it
    understands (exit 1) or an interruption (exit 130, saying where the checkpoints are), a last line when done."""
    console = error_console()
    try:
        with terminate_as_interrupt():
            result = job(config, console)
    except (TrainError, *USER_ERRORS) as error:
        return report_failure(console, tool, error)
    except KeyboardInterrupt:
        return report_interrupt(
            console,
            tool,
            f"checkpoints so far are in {config.out / 'checkpoints'}; rerun the same command with --resume to "
            "go on from the last one",
        )
    console.print(f"done: {result.global_step} steps; run folder {result.run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avts-train`; returns the process exit status."""
    return run_command("avts-train", train, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
