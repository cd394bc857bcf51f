"""Fine-tuning from AVTS vs from scratch on a synthetic labeled split, the §3.3 comparison at toy size.

1. ``avts-synth --classes C`` makes labeled videos (class = disc hue family and tone pitch band; event timing is
   random), and UCF101-style split files list per class the first ``--train-per-class`` videos for training
   and the rest for test; ``avts-ingest --split-file`` writes train and test shards.
2. A separate, unlabeled ``avts-synth`` set is ingested and ``avts-train --recipe cpu-demo`` pretrains AVTS on it
   (self-supervised, as the paper pretrains on Kinetics before fine-tuning on UCF101/HMDB51); by default long
   enough to leave the chance plateau (~3 000 clips with this recipe) and reach ≥ 90% AVTS accuracy.
3. ``avts-finetune`` runs twice on the same split with the same budget and seed: ``--init`` the AVTS checkpoint,
   and ``--init scratch`` (the same architecture).

Prints one table (clip top-1, video top-1, mean class accuracy on the test videos, wall time) and the machine.
Stages whose output already exists under ``--work`` are reused (delete the folder to start over).

    .venv/bin/python benchmarks/finetune_synthetic.py [--work runs/finetune-synthetic] [--modality video]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks")]

from bench_results import ingest_small_videos, machine_line, make_synthetic_videos, run_module  # noqa: E402

PRETRAIN = ["--recipe", "cpu-demo", "--workers", "1"]


def architecture_of(checkpoint: Path) -> list[str]:
    """The scratch-model flags that give ``checkpoint``'s architecture (for an equal comparison)."""
    import torch

    spec = torch.load(checkpoint, map_location="cpu", weights_only=False)["model_spec"]
    return [
        "--arch",
        spec["arch"],
        "--width",
        str(spec["width"]),
        "--audio-width",
        str(spec["audio_width"]),
        "--video-time-bins",
        str(spec["video_time_bins"]),
        "--audio-time-bins",
        str(spec["audio_time_bins"]),
    ]


def labeled_split(work: Path, classes: int, per_class: int, train_per_class: int, log: Path) -> Path:
    """Labeled videos, their split files and their train/test shards; returns the shard folder."""
    videos, shards = work / "labeled", work / "labeled_data" / "shards"
    if not (shards / "0000.tar").exists():
        make_synthetic_videos(videos, classes * per_class, 4, log, "--classes", str(classes), "--seed", "1")
        train, test = [], []
        for folder in sorted(videos.iterdir()):
            names = sorted(path.name for path in folder.iterdir())
            train += [f"{folder.name}/{name} {int(folder.name[-2:]) + 1}" for name in names[:train_per_class]]
            test += [f"{folder.name}/{name}" for name in names[train_per_class:]]
        (work / "trainlist01.txt").write_text("\n".join(train) + "\n")
        (work / "testlist01.txt").write_text("\n".join(test) + "\n")
        split_files = (str(work / "trainlist01.txt"), str(work / "testlist01.txt"))
        ingest_small_videos(videos, shards, log, "--shard-size", "16", "--split-file", *split_files)
    return shards


def pretrain(work: Path, videos: int, epochs: int, epoch_size: int, device: str, log: Path) -> tuple[Path, float, dict]:
    """AVTS pretraining on a separate unlabeled synthetic set; returns the checkpoint, wall time, last epoch."""
    shards, run = work / "pretrain_data" / "shards", work / "pretrain"
    if not (shards / "0000.tar").exists():
        make_synthetic_videos(work / "pretrain_videos", videos, 6, log, "--seed", "2")
        ingest_small_videos(work / "pretrain_videos", shards, log, "--shard-size", "16", "--val-fraction", "0.1")
    wall = 0.0
    if not (run / "checkpoints" / f"epoch-{epochs:04d}.pt").exists():
        wall = run_module(
            [
                "trainer.cli",
                "--shards",
                str(shards),
                "--out",
                str(run),
                *PRETRAIN,
                "--device",
                device,
                "--epochs",
                str(epochs),
                "--epoch-size",
                str(epoch_size),
                *(["--resume"] if run.exists() else []),
            ],
            log,
        )
    epochs_done = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return run / "checkpoints" / "last.pt", wall, [r for r in epochs_done if r["kind"] == "epoch"][-1]


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "finetune-synthetic", help="data and runs")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=40, help="labeled videos per class")
    parser.add_argument("--train-per-class", type=int, default=20, help="of which listed for training")
    parser.add_argument("--pretrain-videos", type=int, default=224)
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--pretrain-epoch-size", type=int, default=1024)
    parser.add_argument("--modality", default="video", choices=["video", "audio", "audiovisual"])
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs (both runs)")
    parser.add_argument("--epoch-size", type=int, default=192, help="fine-tuning samples per epoch (both runs)")
    parser.add_argument("--lr", type=float, default=0.001, help="fine-tuning learning rate (Adam, both runs)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="an AVTS checkpoint to fine-tune from instead of pretraining here (the scratch run gets its architecture)",
    )
    parser.add_argument("--crop-size", default="32", help="fine-tuning crop size (both runs; cpu-demo pretrains at 32)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (every training run)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    logs = args.work / "logs"
    logs.mkdir(exist_ok=True)
    shards = labeled_split(args.work, args.classes, args.per_class, args.train_per_class, logs / "labeled.log")
    if args.checkpoint is None:
        checkpoint, pretrain_wall, pretrained = pretrain(
            args.work,
            args.pretrain_videos,
            args.pretrain_epochs,
            args.pretrain_epoch_size,
            args.device,
            logs / "pretrain.log",
        )
    else:
        checkpoint, pretrain_wall, pretrained = args.checkpoint, 0.0, {}
    architecture = architecture_of(checkpoint)
    common = [
        "--shards",
        str(shards),
        "--modality",
        args.modality,
        "--device",
        args.device,
        "--workers",
        "1",
        "--crop-size",
        args.crop_size,
        "--batch-size",
        "16",
        "--optimizer",
        "adam",
        "--lr",
        str(args.lr),
        "--epochs",
        str(args.epochs),
        "--epoch-size",
        str(args.epoch_size),
        "--test-clips",
        "5",
        "--eval-every",
        str(args.epochs),
    ]
    rows = {}
    for name, init in (("AVTS", [str(checkpoint)]), ("scratch", ["scratch", *architecture])):
        out = args.work / f"finetune-{args.modality}-{name}"
        wall = None
        if not (out / "results.json").exists():
            wall = run_module(
                ["trainer.finetune_cli", *common, "--out", str(out), "--init", *init], logs / f"{out.name}.log"
            )
        rows[name] = json.loads((out / "results.json").read_text()) | {"wall_s": wall}
    test_per_class = args.per_class - args.train_per_class
    table = Table(
        title=f"avts-finetune ({args.modality}) on avts-synth: {args.classes} classes, "
        f"{args.train_per_class} train / {test_per_class} test videos per class, "
        f"{args.epochs} epochs of {args.epoch_size} clips"
    )
    for column in ("init", "clip top-1", "video top-1", "mean class acc.", "wall"):
        table.add_column(column, justify="left" if column == "init" else "right")
    for name, result in rows.items():
        table.add_row(
            name,
            f"{result['clip_top1']:.1%}",
            f"{result['video_top1']:.1%}",
            f"{result['mean_class_accuracy']:.1%}",
            "reused" if result["wall_s"] is None else f"{result['wall_s']:.0f} s",
        )
    console = Console()
    console.print(table)
    accuracy = {
        key: "n/a" if pretrained.get(key) is None else f"{pretrained[key]:.1%}"
        for key in ("val_acc_easy", "val_acc_mixed")
    }
    if args.checkpoint is None:
        console.print(
            f"pretraining: {args.pretrain_videos} unlabeled videos, {args.pretrain_epochs} epochs of "
            f"{args.pretrain_epoch_size} clips ({pretrain_wall:.0f} s this run); last epoch: val AVTS "
            f"accuracy easy {accuracy['val_acc_easy']}, 75/25 hard {accuracy['val_acc_mixed']} (chance: 50%)",
            highlight=False,
        )
    else:
        console.print(f"pretrained checkpoint: {args.checkpoint}", highlight=False)
    console.print(f"machine: {machine_line()}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
