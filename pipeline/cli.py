"""`avts-ingest`: a thin command-line shell over :func:`pipeline.ingest.run_ingest`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.config import ENGINES, IngestConfig
from pipeline.ingest import IngestError, IngestSummary, run_ingest


def parse_args(argv: list[str] | None) -> IngestConfig:
    """Command-line flags → :class:`IngestConfig`."""
    parser = argparse.ArgumentParser(
        prog="avts-ingest",
        description="Decode videos into AVTS WebDataset shards (25 fps H.264 + log filterbank audio features) "
                    "with parquet manifests and normalization stats. Reruns resume.")
    parser.add_argument("--src", type=Path, required=True, help="folder of videos (first folder level = label)")
    parser.add_argument("--out", type=Path, default=Path("shards"), help="shard folder (default: shards/)")
    parser.add_argument("--manifests", type=Path, default=None,
                        help="manifest folder (default: manifests/ beside --out)")
    parser.add_argument("--short-side", type=int, default=128, help="stored short side in pixels (default 128)")
    parser.add_argument("--shard-size", type=int, default=256, help="videos per shard (default 256)")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="validation fraction (default 0.05)")
    parser.add_argument("--stats-fraction", type=float, default=0.20,
                        help="fraction of training videos for the feature mean/std (default 0.20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stats subset (default 0)")
    parser.add_argument("--min-duration", type=float, default=2.5,
                        help="shortest video kept, seconds (default 2.5: a 1-s clip plus a hard negative)")
    parser.add_argument("--mp3", action="store_true", help="MP3 round-trip of the audio before features")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality of the stored video (default 23)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)")
    parser.add_argument("--engine", choices=ENGINES, default="ray",
                        help="ray (default; local or a cluster) or processes (a local pool, no Ray needed)")
    parser.add_argument("--address", default=None, help="Ray cluster to join: auto or HOST:PORT (or RAY_ADDRESS)")
    parser.add_argument("--overwrite", action="store_true", help="delete earlier shards and start over")
    parser.add_argument("--plain", action="store_true", default=None,
                        help="plain progress lines instead of a bar (default when not on a terminal or CI=true)")
    args = parser.parse_args(argv)
    try:
        return IngestConfig(
            src=args.src, out=args.out, manifests=args.manifests, short_side=args.short_side,
            shard_size=args.shard_size, val_fraction=args.val_fraction, stats_fraction=args.stats_fraction,
            seed=args.seed, min_duration_s=args.min_duration, mp3=args.mp3, crf=args.crf, x264_preset=args.preset,
            workers=args.workers, engine=args.engine, address=args.address, overwrite=args.overwrite,
            plain_progress=args.plain)
    except ValueError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def summary_table(summary: IngestSummary, config: IngestConfig) -> Table:
    """The end-of-run table: ok, failed by reason, hours, shards, bytes."""
    table = Table(title="avts-ingest summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("videos", str(summary.videos))
    table.add_row("ingested", f"[green]{summary.ok}")
    table.add_row("failed", f"[red]{summary.failed}")
    for reason, count in sorted(summary.failed_by_reason.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {reason}", str(count))
    table.add_row("hours of video", f"{summary.hours:.3f}")
    table.add_row("shards", f"{summary.shards} ({summary.resumed_shards} kept from an earlier run)")
    table.add_row("bytes", f"{summary.bytes:,}")
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    table.add_row("shards in", str(config.out))
    table.add_row("manifests in", str(config.manifest_dir))
    return table


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avts-ingest`; returns the process exit status."""
    config = parse_args(argv)
    console = Console(stderr=True)
    try:
        summary = run_ingest(config, console)
    except (IngestError, FileNotFoundError) as error:
        console.print(f"[bold red]avts-ingest: {error}")
        return 1
    console.print(summary_table(summary, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
