"""`avts-sync`: audio–video offset of video files with a trained AVTS model (see :mod:`trainer.downstream.sync`).

    avts-sync talk.mp4 --checkpoint runs/k/checkpoints/last.pt
    avts-sync clips/*.mp4 --checkpoint last.pt --range 1.0 --json > offsets.json

Positive offset: the audio lags the video. Writes ``<out>/sync.json`` and one ``<out>/<video>.png`` curve per
file. Exit status: 0 when at least one file was measured, 1 when none was (each file's reason is in the JSON),
2 for bad flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from avts.atomic import atomic_write_text
from avts.config_cli import add_config_arguments, config_from_args
from avts.console import interruptible, printable, report_failure
from avts.folder_lock import FolderLockError, hold
from avts.progress import CountProgress
from trainer.downstream.avts_eval import EvalError, input_settings, load_model, pick_device
from trainer.downstream.sync import SIGN_CONVENTION, SyncConfig, SyncError, plot_curve, sync_file

TOOL = "avts-sync"
LOCK = ".avts-sync.lock"  # one avts-sync per --out folder
RESULTS = "sync.json"


def parse_args(argv: list[str] | None) -> SyncConfig:
    """Command-line flags → :class:`SyncConfig` (the videos are positional, the rest one flag per field)."""
    parser = argparse.ArgumentParser(
        prog=TOOL,
        description="Find the audio-video offset of video files with a trained AVTS model: distances between "
        "1-s video windows and audio windows shifted over ±range, combined over the file; positive "
        "offset = the audio lags the video.",
    )
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help="video files")
    add_config_arguments(parser, SyncConfig)
    args = parser.parse_args(argv)
    return config_from_args(SyncConfig, args, parser, videos=tuple(args.videos))


def unique_plot_path(folder: Path, video: Path, taken: set[str]) -> Path:
    """``<folder>/<video stem>.png`` (the stem made printable), numbered when two videos share a stem."""
    stem = printable(video.stem)
    name, number = f"{stem}.png", 1
    while name in taken:
        number += 1
        name = f"{stem}-{number}.png"
    taken.add(name)
    return folder / name


def results_table(files: list[dict[str, Any]]) -> Table:
    """One row per file: offset, confidence, windows, or the reason it failed."""
    table = Table(title="audio-video offsets", caption=SIGN_CONVENTION)
    for column in ("file", "offset s", "frames", "confidence", "agreement", "windows", "note"):
        table.add_column(column, justify="left" if column in ("file", "note") else "right")
    for row in files:
        name = Path(row["path"]).name
        if row["ok"]:
            table.add_row(
                name,
                f"{row['offset_s']:+.2f}",
                f"{row['offset_frames']:+.2f}",
                f"{row['confidence']:.3f}",
                f"{row['window_agreement']:.2f}",
                str(row["windows"]),
                row["note"] or "",
            )
        else:
            table.add_row(name, "-", "-", "-", "-", "-", f"[red]{row['error']}")
    return table


def main(argv: list[str] | None = None) -> int:
    """Run `avts-sync`; returns the exit status."""
    config = parse_args(argv)
    return interruptible(
        TOOL,
        "sync.json is written at the end (plots of the files done so far are in --out); rerun the same command",
        lambda: run_command(config),
    )


def foreign_files(folder: Path) -> list[str]:
    """The names in ``folder`` that no avts-sync wrote: all of them but the lock, unless the folder holds an
    avts-sync ``sync.json`` (then it is an earlier run's folder, and writing it again is a rerun)."""
    if not folder.is_dir():
        return []
    try:
        ours = "sign_convention" in json.loads((folder / RESULTS).read_text())
    except (OSError, ValueError, TypeError):
        ours = False
    return [] if ours else sorted(printable(path.name) for path in folder.iterdir() if path.name != LOCK)


def run_command(config: SyncConfig) -> int:
    """The command's work once its flags are parsed: in a folder of its own, one run at a time; returns the exit
    status."""
    console = Console(stderr=True)
    foreign = foreign_files(config.out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        message = f"--out {config.out} holds files avts-sync did not write ({shown}); give a new or empty folder"
        return report_failure(console, TOOL, SyncError(message))
    try:
        with hold(config.out, LOCK, TOOL, "give another --out"):
            return sync_files(config, console)
    except FolderLockError as error:
        return report_failure(console, TOOL, error)


def sync_files(config: SyncConfig, console: Console) -> int:
    """Measure every video's offset, write ``sync.json`` and the curves; returns the exit status."""
    started = time.monotonic()
    device = pick_device(config.device)
    try:
        trained = load_model(config.checkpoint, device)
    except EvalError as error:
        return report_failure(console, TOOL, error)
    settings = input_settings(trained, device)
    files: list[dict[str, Any]] = []
    taken: set[str] = set()
    with CountProgress("syncing", len(config.videos), "files", console=console) as bar:
        for video in config.videos:
            try:
                result = sync_file(trained.model, video, settings, config, device)
            except SyncError as error:
                files.append({"ok": False, "path": printable(str(video)), "error": printable(str(error))})
                bar.advance(1, failed=1)
                continue
            result.plot = str(plot_curve(result, unique_plot_path(config.out, video, taken)))
            files.append(result.to_dict())
            bar.advance(1)
    measured = sum(row["ok"] for row in files)
    report = {
        "checkpoint": str(config.checkpoint),
        "sign_convention": SIGN_CONVENTION,
        "range_s": config.range,
        "step_s": config.step,
        "hop_s": config.hop,
        "aggregate": config.aggregate,
        "short_side": config.short_side,
        "files": files,
        "summary": {"files": len(files), "measured": measured, "failed": len(files) - measured},
    }
    text = json.dumps(report, indent=2)
    atomic_write_text(config.out / RESULTS, text)
    if config.json:
        print(text)
    (console if config.json else Console()).print(results_table(files))
    console.print(
        f"{measured}/{len(files)} files measured in {time.monotonic() - started:.1f} s; results in "
        f"{config.out / 'sync.json'}",
        highlight=False,
    )
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main())
