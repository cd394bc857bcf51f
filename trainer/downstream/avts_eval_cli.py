"""`avts-eval`: AVTS accuracy of a checkpoint on held-out shards (see :mod:`trainer.downstream.avts_eval`).

    avts-eval --checkpoint runs/k/checkpoints/last.pt --shards 'test-shards/val-{0000..0009}.tar'
    avts-eval --checkpoint last.pt --shards test-shards/ --split train --tau-shards shards/ --out eval.json

Exit status: 0 with results written, 1 with a clear message when nothing could be evaluated, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console

from avts.atomic import atomic_write_text
from avts.config_cli import add_config_arguments, config_from_args
from avts.console import interruptible
from trainer.downstream.avts_eval import EvalConfig, EvalError, print_results, run_eval


def parse_args(argv: list[str] | None) -> EvalConfig:
    """Command-line flags → :class:`EvalConfig` (one flag per field, defaults from the dataclass)."""
    parser = argparse.ArgumentParser(
        prog="avts-eval",
        description="AVTS accuracy (paper §3.2) of an avts-train checkpoint on held-out shards: easy-only and "
        "75% easy / 25% hard test mixes, threshold rule with τ chosen on other videos, and the sync "
        "head when the checkpoint has one.",
    )
    add_config_arguments(parser, EvalConfig)
    return config_from_args(EvalConfig, parser.parse_args(argv), parser)


def main(argv: list[str] | None = None) -> int:
    """Run `avts-eval`; returns the exit status."""
    config = parse_args(argv)
    return interruptible(
        "avts-eval", "results are written only at the end; rerun the same command", lambda: run_command(config)
    )


def run_command(config: EvalConfig) -> int:
    """The command's work once its flags are parsed; returns the exit status."""
    console = Console(stderr=True)
    started = time.monotonic()
    try:
        results = run_eval(config)
    except EvalError as error:
        console.print(f"[bold red]avts-eval: {error}")
        return 1
    atomic_write_text(config.out, json.dumps(results, indent=2))
    print_results(results, Console())
    console.print(f"results in {config.out}, {time.monotonic() - started:.1f} s elapsed", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
