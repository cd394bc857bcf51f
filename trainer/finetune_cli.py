"""`avts-finetune`: a thin command-line shell over :func:`trainer.finetune.finetune`."""

from __future__ import annotations

import argparse
import sys

from avts.config_cli import add_config_arguments, config_from_args
from trainer.cli import run_command
from trainer.finetune import finetune
from trainer.finetune_config import FinetuneConfig


def parse_args(argv: list[str] | None) -> FinetuneConfig:
    """Command-line flags → :class:`FinetuneConfig` (one flag per field, defaults from the dataclass)."""
    parser = argparse.ArgumentParser(
        prog="avts-finetune",
        description="Fine-tune the AVTS video subnet, audio subnet or both (with the FC 512 → FC C head) for "
        "classification from labeled avts-ingest shards, starting from an avts-train checkpoint or "
        "from scratch; test on N clips per video (one GPU, or many under torchrun).",
    )
    add_config_arguments(parser, FinetuneConfig)
    return config_from_args(FinetuneConfig, parser.parse_args(argv), parser)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avts-finetune`; returns the process exit status."""
    return run_command("avts-finetune", finetune, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
