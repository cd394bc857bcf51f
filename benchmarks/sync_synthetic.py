"""`avts-sync` on synthetic files with known offsets: the share found within one video frame (40 ms).

End to end on the CPU: `avts-synth` training videos → `avts-ingest` → `avts-train` (a small model that reaches
~0.9 AVTS accuracy in minutes) → held-out `avts-synth --audio-offset X` files (other seed, so other scenes) for
each known offset X → `avts-sync` → per-offset table. The baseline, measured in the same run on the same files,
is an untrained model of the same shape with the same input statistics: what the search finds without learning.

    .venv/bin/python benchmarks/sync_synthetic.py --work /tmp/sync-bench            # everything (~1 h, 2 cores)
    .venv/bin/python benchmarks/sync_synthetic.py --work W --checkpoint run/checkpoints/last.pt   # skip training

Stages whose output exists in ``--work`` are not redone (delete the folder to start over).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
ONE_BLAS_THREAD = {"OMP_NUM_THREADS": "1"}  # the steps run as subprocesses, their math libraries one thread each
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_results import ingest_small_videos, machine_line, make_synthetic_videos, run_module  # noqa: E402

from trainer.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from trainer.downstream.sync_cli import main as sync_main  # noqa: E402
from trainer.models import ModelSpec, build_avts  # noqa: E402

FRAME_S = 0.04
TRAIN_ARGS = [
    "--optimizer",
    "adam",
    "--lr",
    "0.001",
    "--width",
    "8",
    "--audio-width",
    "8",
    "--crop-size",
    "48",
    "--video-time-bins",
    "10",
    "--audio-time-bins",
    "10",
    "--batch-size",
    "32",
    "--epoch-size",
    "1024",
    "--audio-context",
    "6",
    "--workers",
    "1",
    "--log-every",
    "8",
    "--device",
    "cpu",
    "--plain",
]


def train_model(work: Path, videos: int, epochs: int) -> Path:
    """Synthetic training data, ingested at short side 64, and the small model; returns its checkpoint."""
    if not (work / "videos").is_dir():
        make_synthetic_videos(work / "videos", videos, 6, work / "synth.log", env=ONE_BLAS_THREAD)
    if not (work / "shards" / "0000.tar").exists():
        ingest_small_videos(
            work / "videos",
            work / "shards",
            work / "ingest.log",
            "--shard-size",
            "32",
            "--val-fraction",
            "0.08",
            "--plain",
            env=ONE_BLAS_THREAD,
        )
    checkpoint = work / "run" / "checkpoints" / "last.pt"
    if not checkpoint.exists():
        run_module(
            [
                "trainer.cli",
                "--shards",
                str(work / "shards"),
                "--out",
                str(work / "run"),
                "--epochs",
                str(epochs),
                *TRAIN_ARGS,
            ],
            work / "train.log",
            ONE_BLAS_THREAD,
        )
    return checkpoint


def untrained_twin(checkpoint: Path, target: Path) -> Path:
    """A checkpoint with the same model shape, stats and config as ``checkpoint`` but initial weights."""
    if (target / "last.pt").exists():
        return target / "last.pt"
    content = load_checkpoint(checkpoint)
    torch.manual_seed(content["config"].get("seed", 0))
    model = build_avts(ModelSpec.from_dict(content["model_spec"]))
    return save_checkpoint(
        target,
        {
            "model_spec": content["model_spec"],
            "stats": content["stats"],
            "model": model.state_dict(),
            "config": content["config"],
        },
    )


def test_files(work: Path, offsets: list[float], per_offset: int, duration: float) -> dict[float, list[Path]]:
    """``per_offset`` held-out files for each known offset (seed 1: scenes the model never saw)."""
    files = {}
    for offset in offsets:
        folder = work / "test" / f"offset{offset:+.2f}"
        if len(list(folder.glob("*.mp4"))) < per_offset:
            make_synthetic_videos(
                folder,
                per_offset,
                duration,
                work / "test-synth.log",
                "--seed",
                "1",
                "--audio-offset",
                str(offset),
                env=ONE_BLAS_THREAD,
            )
        files[offset] = sorted(folder.glob("*.mp4"))[:per_offset]
    return files


def measure(checkpoint: Path, files: dict[float, list[Path]], out: Path, sync_args: list[str]) -> dict[str, dict]:
    """Run `avts-sync` on every file (its per-file table silenced: the summary is ours); returns its JSON rows by
    path."""
    report = out / "sync.json"
    if not report.exists():
        paths = [str(path) for group in files.values() for path in group]
        with contextlib.redirect_stdout(io.StringIO()):
            sync_main([*paths, "--checkpoint", str(checkpoint), "--short-side", "64", "--out", str(out), *sync_args])
    return {row["path"]: row for row in json.loads(report.read_text())["files"]}


def summary(rows: list[dict], truth: float) -> tuple[int, int, float, float]:
    """(files measured, found within one frame, mean |error| s, median confidence)."""
    ok = [row for row in rows if row["ok"]]
    errors = np.array([abs(row["offset_s"] - truth) for row in ok])
    within = int(np.sum(errors <= FRAME_S + 1e-9))
    confidence = float(np.median([row["confidence"] for row in ok])) if ok else float("nan")
    return len(ok), within, float(errors.mean()) if ok else float("nan"), confidence


def main(argv: list[str] | None = None) -> int:
    """Train (or take) a model, make the test files, run avts-sync with it and with its untrained twin, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/sync-synthetic"), help="working folder")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint (skips the training stages)")
    parser.add_argument("--videos", type=int, default=400, help="training videos (6 s, 64 px)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of 1024 clips")
    parser.add_argument("--offsets", type=float, nargs="+", default=[-0.4, -0.2, 0.0, 0.2, 0.4])
    parser.add_argument("--per-offset", type=int, default=20, help="test files per offset")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per test file")
    parser.add_argument("--range", type=float, default=1.0, help="avts-sync --range")
    parser.add_argument("--hop", type=float, default=0.2, help="avts-sync --hop")
    parser.add_argument("--device", default="cpu", help="device of avts-sync: cpu, cuda or auto")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    checkpoint = args.checkpoint or train_model(args.work, args.videos, args.epochs)
    files = test_files(args.work, args.offsets, args.per_offset, args.duration)
    sync_args = ["--range", str(args.range), "--hop", str(args.hop), "--device", args.device]
    trained = measure(checkpoint, files, args.work / "sync-trained", sync_args)
    baseline = measure(
        untrained_twin(checkpoint, args.work / "untrained"), files, args.work / "sync-untrained", sync_args
    )

    table = Table(
        title=f"avts-sync on held-out avts-synth files: found within one video frame ({FRAME_S * 1000:.0f} "
        f"ms), range ±{args.range} s, hop {args.hop} s, 10-ms steps"
    )
    for column in (
        "true offset s",
        "files",
        "trained: within 1 frame",
        "mean |error| s",
        "median confidence",
        "untrained: within 1 frame",
    ):
        table.add_column(column, justify="right")
    totals = np.zeros(3, dtype=int)
    for offset, paths in files.items():
        measured, within, error, confidence = summary([trained[str(p)] for p in paths], offset)
        _, base_within, _, _ = summary([baseline[str(p)] for p in paths], offset)
        totals += (len(paths), within, base_within)
        table.add_row(
            f"{offset:+.2f}",
            str(len(paths)),
            f"{within}/{measured}",
            f"{error:.3f}",
            f"{confidence:.3f}",
            f"{base_within}/{len(paths)}",
        )
    share, base_share = totals[1] / totals[0], totals[2] / totals[0]
    table.add_row(
        "all",
        str(totals[0]),
        f"[bold]{totals[1]}/{totals[0]} = {share:.1%}",
        "",
        "",
        f"{totals[2]}/{totals[0]} = {base_share:.1%}",
    )
    console = Console(width=150)
    console.print(table)
    config = (
        json.loads((checkpoint.parent.parent / "config.json").read_text())
        if (checkpoint.parent.parent / "config.json").exists()
        else {}
    )
    console.print(
        f"machine: {machine_line()}; checkpoint {checkpoint}"
        + (f" ({config.get('epochs')} epochs × {config.get('epoch_size')} clips)" if config else "")
        + f"; {time.monotonic() - started:.0f} s",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
