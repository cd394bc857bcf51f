"""``avts-synth``: generate synthetic audio-visual videos whose events are synchronized (see :mod:`pipeline.synth`)."""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console

from avts.config_cli import add_config_arguments, config_from_args
from avts.progress import CountProgress
from pipeline.synth import SynthConfig, generate


def parse_args(argv: list[str] | None = None) -> SynthConfig:
    """Command-line flags → :class:`SynthConfig` (one flag per field, defaults from the dataclass)."""
    parser = argparse.ArgumentParser(
        prog="avts-synth",
        description="Generate MP4 videos (H.264 + AAC) in which a visual and a sound event happen together at random "
        "times, for smoke tests and for checking that training learns audio-visual synchronization.",
    )
    add_config_arguments(parser, SynthConfig)
    return config_from_args(SynthConfig, parser.parse_args(argv), parser)


def main(argv: list[str] | None = None) -> int:
    """Run ``avts-synth``; returns the exit status."""
    config = parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    start = time.monotonic()
    with CountProgress("generating", config.videos, "videos", console=console) as bar:
        paths = generate(config, lambda done: bar.advance(done - bar.done))
    size = sum(path.stat().st_size for path in paths)
    Console().print(
        f"{len(paths)} videos, {len(paths) * config.duration:.0f} s of video, {size / 1e6:.1f} MB "
        f"in {config.out}, {time.monotonic() - start:.1f} s elapsed",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
