"""`avts-ingest`: a thin command-line shell over :func:`pipeline.ingest.run_ingest`.

Its module level imports only what parsing the flags needs. The local pool's workers are started with
``spawn``, which imports the main module again in every worker (as ``__mp_main__``, whether the command runs as
the ``avts-ingest`` script or as ``python -m pipeline.cli``); the ingest machinery (the engines, pyarrow for the
manifests) and the summary's table are imported where they are used, so that the workers do not pay for what only
the driver uses.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from avts.config_cli import add_config_arguments, config_from_args
from avts.console import USER_ERRORS, error_console, report_failure, report_interrupt
from avts.interrupts import terminate_as_interrupt
from pipeline.config import IngestConfig

if TYPE_CHECKING:
    from rich.table import Table

    from pipeline.ingest import IngestSummary


def parse_args(argv: list[str] | None) -> IngestConfig:
    """Command-line flags → :class:`IngestConfig` (one flag per field, defaults from the dataclass)."""
    parser = argparse.ArgumentParser(
        prog="avts-ingest",
        description="Decode videos into AVTS WebDataset shards (25 fps H.264 + log filterbank audio features) "
        "with parquet manifests and normalization stats. Reruns resume.",
    )
    add_config_arguments(parser, IngestConfig)
    return config_from_args(IngestConfig, parser.parse_args(argv), parser)


def summary_table(summary: IngestSummary, config: IngestConfig) -> Table:
    """The end-of-run table: ok, failed by reason, hours, shards, bytes."""
    from rich.table import Table  # here, not above: see the module's docstring

    table = Table(title="avts-ingest summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("videos", str(summary.videos))
    table.add_row("ingested", f"[green]{summary.ok}")
    table.add_row("failed", f"[red]{summary.failed}")
    if summary.skipped:
        table.add_row("skipped on purpose", str(summary.skipped))
    for reason, count in sorted(summary.failed_by_reason.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {reason}", str(count))
    table.add_row("hours of video", f"{summary.hours:.3f}")
    table.add_row("shards", f"{summary.shards} ({summary.resumed_shards} kept from an earlier run)")
    if summary.failed_shards:
        table.add_row("[red]shards not written", f"[red]{summary.failed_shards} (a rerun retries them)")
    table.add_row("bytes", f"{summary.bytes:,}")
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    table.add_row("engine", config.engine_description())
    table.add_row("shards in", str(config.out))
    table.add_row("manifests in", str(config.manifest_dir))
    return table


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avts-ingest`; returns the process exit status."""
    config = parse_args(argv)
    from pipeline.ingest import IngestError, run_ingest  # here, not above: see the module's docstring

    console = error_console()
    try:
        with terminate_as_interrupt():
            summary = run_ingest(config, console)
    except (IngestError, *USER_ERRORS) as error:
        return report_failure(console, "avts-ingest", error)
    except KeyboardInterrupt:
        return report_interrupt(
            console, "avts-ingest", "complete shards are kept; rerun the same command to resume where it stopped"
        )
    console.print(summary_table(summary, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
