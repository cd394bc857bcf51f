"""`avts-train`: a thin command-line shell over :func:`trainer.train.train`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from trainer.config import OBJECTIVES, TrainConfig
from trainer.train import TrainError, train


def parse_args(argv: list[str] | None) -> TrainConfig:
    """Command-line flags → :class:`TrainConfig`."""
    p = argparse.ArgumentParser(
        prog="avts-train",
        description="Train the AVTS two-stream network from avts-ingest shards (one GPU, or many under torchrun).")
    p.add_argument("--shards", required=True,
                   help="shards: 'shards/{0000..2047}.tar', 'shards/<0000..2047>.tar', a folder, a list file, "
                        "or URLs (pipe:, http://); comma-separated parts allowed")
    p.add_argument("--out", type=Path, required=True, help="run folder (config, metrics, checkpoints, plots)")
    p.add_argument("--val-shards", default=None, help="validation shards (default: val-*.tar beside --shards)")
    p.add_argument("--stats", type=Path, default=None,
                   help="feature stats.json (default: manifests/stats.json beside the shard folder)")
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--batch-size", type=int, default=16, help="clips per GPU/process (default 16)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                   help="sgd with momentum (the paper's) or adam")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--margin", type=float, default=0.99, help="contrastive margin η of Eq. 1 (default 0.99)")
    p.add_argument("--plateau-patience", type=int, default=5, help="epochs without loss decrease before LR ×0.1")
    p.add_argument("--curriculum", default=None,
                   help="e.g. '0:easy=1;50:easy=0.75,hard=0.25' (default: the paper's, scaled to --epochs)")
    p.add_argument("--hard-gap", type=float, default=0.5, help="seconds between a hard negative and the clip")
    p.add_argument("--super-hard-offset", type=float, default=0.5, help="shift of super-hard negatives (s)")
    p.add_argument("--objective", choices=OBJECTIVES, default="contrastive",
                   help="contrastive (Eq. 1) or ce: the two-FC-layer cross-entropy stage of §3.2")
    p.add_argument("--init-from", type=Path, default=None, help="checkpoint to start the weights from")
    p.add_argument("--arch", default="mc3", choices=["mc2", "mc3", "mc4", "mc5"], help="video subnet")
    p.add_argument("--width", type=int, default=64, help="video subnet base width (64 = mc3_18 size)")
    p.add_argument("--audio-width", type=int, default=64, help="audio subnet base width")
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--video-time-bins", type=int, default=1,
                   help="time bins kept by the video subnet's final pooling (1 = global, as MC3)")
    p.add_argument("--audio-time-bins", type=int, default=5, help="time bins of the audio subnet's pool6")
    p.add_argument("--embedding-norm", choices=["l2", "none"], default="l2",
                   help="L2-normalize embeddings so the margin has a fixed scale (default l2)")
    p.add_argument("--crop-size", type=int, default=112)
    p.add_argument("--audio-context", type=float, default=10.0, help="seconds of audio shipped around each clip")
    p.add_argument("--shuffle-buffer", type=int, default=500)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers per process")
    p.add_argument("--epoch-size", type=int, default=None,
                   help="samples per epoch over all ranks; streams resampled shards when set")
    p.add_argument("--val-clips", type=int, default=4, help="clips per validation video")
    p.add_argument("--ckpt-every", type=int, default=500, help="steps between mid-epoch checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--audit", action="store_true",
                   help="write audit-rank<r>.jsonl per epoch: sample keys read and a weight checksum")
    p.add_argument("--plain", action="store_true", default=None, help="plain progress lines instead of a bar")
    a = p.parse_args(argv)
    try:
        return TrainConfig(
            shards=a.shards, out=a.out, val_shards=a.val_shards, stats=a.stats, epochs=a.epochs,
            batch_size=a.batch_size, optimizer=a.optimizer, lr=a.lr, momentum=a.momentum,
            weight_decay=a.weight_decay, margin=a.margin,
            plateau_patience=a.plateau_patience, curriculum=a.curriculum, hard_gap_s=a.hard_gap,
            super_hard_offset_s=a.super_hard_offset, objective=a.objective, init_from=a.init_from,
            video_arch=a.arch, width=a.width, audio_width=a.audio_width, embed_dim=a.embed_dim,
            embedding_norm=a.embedding_norm, video_time_bins=a.video_time_bins,
            audio_time_bins=a.audio_time_bins,
            crop_size=a.crop_size, audio_context_s=a.audio_context, shuffle_buffer=a.shuffle_buffer,
            workers=a.workers, epoch_size=a.epoch_size, val_clips=a.val_clips, ckpt_every=a.ckpt_every,
            resume=a.resume, compile=a.compile, seed=a.seed, device=a.device, log_every=a.log_every,
            plain_progress=a.plain, audit=a.audit)
    except ValueError as error:
        p.error(str(error))
        raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avts-train`; returns the process exit status."""
    config = parse_args(argv)
    console = Console(stderr=True)
    try:
        result = train(config, console)
    except (TrainError, FileNotFoundError) as error:
        console.print(f"[bold red]avts-train: {error}")
        return 1
    console.print(f"done: {result.global_step} steps; run folder {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
