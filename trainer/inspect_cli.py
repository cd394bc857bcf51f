"""`avts-inspect`: pictures of shard samples (sound and picture on one time axis) and of training pairs.

avts-inspect shards/val-0000.tar --out sheet.png --src synth/          # contact sheet, events marked
avts-inspect shards/0000.tar --key synth_00007-1a2b3c4d5e --start 1 --seconds 3 --out sheet.png
avts-inspect 'shards/{0000..0003}.tar' --batch --out pairs.png          # pairs as the sampler makes them
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from avts.config_cli import add_config_arguments, config_from_args, option, validate
from avts.console import report_failure
from trainer.curriculum import Curriculum
from trainer.inspect import InspectError, draw_batch, draw_sheet, event_times, read_sample
from trainer.shardlist import expand_shards


@dataclass(frozen=True)
class InspectConfig:
    """What to draw; `avts-inspect`'s flags (the shards are its positional argument)."""

    shards: str = option(help="a shard (.tar), or any shard spec avts-train reads: brace pattern, folder, list")
    out: Path = option(help="PNG to write")
    key: str | None = option(None, help="sample to draw (unset: the first one)")
    src: Path | None = option(
        None,
        help="the folder that was ingested: avts-synth event times are read from the "
        "sample's source file there and marked",
    )
    start: float = option(0.0, help="start of the contact sheet's window, seconds on the shard's clock")
    seconds: float = option(2.0, help="length of the contact sheet's window, seconds")
    batch: bool = option(False, help="draw training pairs as avts-train makes them instead of a contact sheet")
    pairs: int = option(6, help="pairs drawn with --batch (half of them positives)")
    mix: str = option("easy=0.5,hard=0.5", help="negatives drawn with --batch, e.g. easy=0.75,hard=0.25")
    seed: int = option(0, help="seed of the clips and pairs drawn with --batch")

    def __post_init__(self) -> None:
        validate(
            [
                (self.seconds > 0, "--seconds must be > 0"),
                (self.start >= 0, "--start must be ≥ 0"),
                (self.pairs >= 2, "--pairs must be ≥ 2 (easy negatives come from another video of the batch)"),
                (self.out.suffix.lower() == ".png", "--out must be a .png file"),
            ]
        )


def shard_list(spec: str) -> list[str]:
    """The shards of ``spec``; a folder gives all of its shards, training, validation and test."""
    if Path(spec).is_dir():
        shards = [str(path) for path in sorted(Path(spec).glob("*.tar")) if not path.name.startswith(".")]
        if not shards:
            raise FileNotFoundError(f"no shards in {spec}")
        return shards
    return expand_shards(spec)


def parse_args(argv: list[str] | None = None) -> InspectConfig:
    """Command-line arguments → :class:`InspectConfig`."""
    parser = argparse.ArgumentParser(
        prog="avts-inspect",
        description="Draw a shard sample's frames above its log filterbank on one time axis (avts-synth event "
        "times marked with --src), or a few training pairs as the loader and pair sampler make them.",
    )
    parser.add_argument("shards", help=InspectConfig.__dataclass_fields__["shards"].metadata["help"])
    add_config_arguments(parser, InspectConfig, skip=("shards",))
    return config_from_args(InspectConfig, parser.parse_args(argv), parser)


def main(argv: list[str] | None = None) -> int:
    """Run `avts-inspect`; returns the exit status."""
    config = parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    try:
        shards = shard_list(config.shards)
        if config.batch:
            mix = Curriculum.parse(f"0:{config.mix}").stages[0].mix
            views = draw_batch(shards, config.out, config.pairs, mix, config.seed)
            for view in views:
                offset = "another video" if view.offset_s is None else f"offset {view.offset_s:+.2f} s"
                console.print(f"{view.kind}: clip of {view.clip_key}, audio of {view.audio_key} ({offset})")
            console.print(f"{len(views)} training pairs drawn in {config.out}")
            return 0
        sample = read_sample(shards, config.key)
        events, note = event_times(sample, config.src)
        _, lag = draw_sheet(sample, config.out, config.start, config.seconds, events, note)
    except (InspectError, ValueError, FileNotFoundError) as error:
        return report_failure(console, "avts-inspect", error)
    console.print(
        f"{sample.key}: contact sheet in {config.out}; sound onsets follow picture onsets by "
        f"{lag * 1000:+.0f} ms; {note}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
