"""The AVTS training loop, top to bottom: setup → resume → epochs of (GPU pairs → loss → SGD) → validation.

Runs as one process, or as one process per GPU under ``torchrun`` (DDP). Checkpoints are atomic and hold
everything needed to continue exactly: model, optimizer, LR scheduler, epoch, curriculum stage, step,
the batches each loader worker had delivered, and the random states.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.schema import FEATURE_RATE
from pipeline.stats import FeatureStats
from trainer import distributed
from trainer.augment import AudioNormalizer
from trainer.checkpoint import LAST, load_checkpoint, restore_rng, rng_state, save_checkpoint
from trainer.config import TrainConfig
from trainer.curriculum import Curriculum
from trainer.data import WINDOW, LoaderSpec, build_loader
from trainer.evaluate import evaluate
from trainer.forward import InputSettings, training_step
from trainer.loss import pair_distance
from trainer.metrics import MetricsLog, plot_run
from trainer.models import SyncHead, build_avts
from trainer.pair_model import PairModel
from trainer.progress import StepProgress
from trainer.sampler import PairSampler
from trainer.shardlist import default_stats_path, default_val_spec, expand_shards


class TrainError(Exception):
    """Training cannot start; the message says why and what to do."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    consumed: dict[int, int] = field(default_factory=dict)  # batches delivered per loader worker this epoch
    loss_sum: float = 0.0
    loss_count: int = 0


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_dir: Path
    global_step: int
    last_epoch: dict[str, Any]


def train(cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    """Train (or continue training with ``cfg.resume``) and return where the run ended."""
    runtime = distributed.setup(cfg.device)
    console = console or Console(stderr=True)
    device = runtime.device
    try:
        return _train(cfg, runtime, console, device)
    finally:
        distributed.teardown(runtime)


def _train(cfg: TrainConfig, runtime: distributed.Runtime, console: Console, device: torch.device) -> TrainResult:
    # ---- data -----------------------------------------------------------------------------------------------
    shards = expand_shards(cfg.shards)
    val_spec = cfg.val_shards or default_val_spec(shards)
    val_shards = expand_shards(val_spec, "val") if val_spec else []
    stats_path = cfg.stats or default_stats_path(shards)
    if stats_path is None or not Path(stats_path).exists():
        raise TrainError("no normalization stats: pass --stats manifests/stats.json (written by avts-ingest)")
    stats = FeatureStats.load(Path(stats_path))
    context = round(cfg.audio_context_s * FEATURE_RATE)
    on_gpu = device.type == "cuda"
    train_spec = LoaderSpec(shards, cfg.batch_size, cfg.clip_frames, context, cfg.seed, cfg.workers,
                            cfg.shuffle_buffer, training=True, resampled=cfg.epoch_size is not None,
                            pin_memory=on_gpu)
    val_spec_loader = LoaderSpec(val_shards, cfg.batch_size, cfg.clip_frames, context, cfg.seed,
                                 min(cfg.workers, len(val_shards)), training=False,
                                 clips_per_video=cfg.val_clips, pin_memory=on_gpu)
    steps_cap = cfg.epoch_size // (cfg.batch_size * runtime.world_size) if cfg.epoch_size else None

    # ---- model, optimizer, schedule -------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    net = build_avts(cfg.video_arch, cfg.width, cfg.audio_width, cfg.embed_dim, cfg.video_time_bins,
                     cfg.audio_time_bins)
    head = SyncHead(cfg.embed_dim) if cfg.objective == "ce" else None
    model = PairModel(net, head, normalize=cfg.embedding_norm == "l2").to(device)
    if on_gpu:
        model.net.video.to(memory_format=torch.channels_last_3d)
    if cfg.init_from is not None:
        weights = load_checkpoint(cfg.init_from, device)["model"]
        missing, _ = model.load_state_dict(weights, strict=False)
        if any(not name.startswith("head.") for name in missing):
            raise TrainError(f"{cfg.init_from} does not hold AVTS weights for this architecture")
    if cfg.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr,
                                                            weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.lr_factor,
                                                           patience=cfg.plateau_patience)
    curriculum = Curriculum.parse(cfg.curriculum) if cfg.curriculum else Curriculum.paper_default(cfg.epochs)
    sampler = PairSampler(WINDOW, round(cfg.hard_gap_s * FEATURE_RATE), round(cfg.super_hard_offset_s * FEATURE_RATE))
    settings = InputSettings(cfg.crop_size, cfg.crop_scales, AudioNormalizer(stats.mean, stats.std, device), sampler)
    generator = torch.Generator(device).manual_seed(cfg.seed * 7919 + runtime.rank)

    # ---- run folder and resume ------------------------------------------------------------------------------
    ckpt_dir = cfg.out / "checkpoints"
    state = Progress()
    if (ckpt_dir / LAST).exists() and not cfg.resume:
        raise TrainError(f"{cfg.out} already holds a run: pass --resume to continue it, or choose another --out")
    if cfg.resume and (ckpt_dir / LAST).exists():
        saved = load_checkpoint(ckpt_dir / LAST, device)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = Progress(**saved["progress"])
        restore_rng(saved["rng"][min(runtime.rank, len(saved["rng"]) - 1)], generator)
    if runtime.is_main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        (cfg.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        console.print(f"[bold]avts-train[/] {runtime.world_size} process(es) on {device}; curriculum "
                      f"{curriculum.describe()}; {len(shards)} train / {len(val_shards)} val shards")
        console.print_json(data=cfg.to_dict())
        if state.global_step:
            console.print(f"resuming at epoch {state.epoch + 1}, step {state.step_in_epoch} of it "
                          f"(global step {state.global_step})")
    ddp = (DistributedDataParallel(model, device_ids=[device.index] if on_gpu else None)
           if runtime.distributed else model)
    forward = torch.compile(ddp) if cfg.compile else ddp
    log = MetricsLog(cfg.out)
    last_epoch: dict[str, Any] = {}
    last_checkpoint_step = state.global_step

    # ---- epochs ---------------------------------------------------------------------------------------------
    for epoch in range(state.epoch, cfg.epochs):
        mix = curriculum.mix_at(epoch)
        model.train()
        batches = iter(build_loader(train_spec, epoch, skips=dict(state.consumed)))
        loss_total = torch.zeros((), device=device)
        window_loss = torch.zeros((), device=device)
        window_clips, window_started = 0, time.perf_counter()
        seen_keys: list[str] = []
        with StepProgress(f"epoch {epoch + 1}/{cfg.epochs}", steps_cap, console,
                          enabled=runtime.is_main, plain=cfg.plain_progress) as bar:
            while steps_cap is None or state.step_in_epoch < steps_cap:
                batch = next(batches, None)
                if not distributed.all_ranks_true(batch is not None, runtime):
                    break  # every rank stops at the same step
                out = training_step(forward, optimizer, batch.to(device), settings, mix, generator, cfg.margin)
                loss = out.loss

                state.step_in_epoch += 1
                state.global_step += 1
                state.consumed[batch.worker] = state.consumed.get(batch.worker, 0) + 1
                loss_total += loss.detach()
                window_loss += loss.detach()
                window_clips += len(batch.keys)
                if cfg.audit:
                    seen_keys.extend(batch.keys)
                if state.global_step % cfg.log_every == 0:
                    elapsed = time.perf_counter() - window_started
                    step_loss = float(window_loss) / cfg.log_every  # one host sync per log interval
                    clips_per_s = window_clips * runtime.world_size / elapsed
                    if runtime.is_main:
                        with torch.no_grad():
                            gap = _distance_gap(out.video_emb, out.audio_emb, out.pairs.label)
                        log.write("step", step=state.global_step, epoch=epoch, loss=step_loss,
                                  clips_per_s=clips_per_s, lr=optimizer.param_groups[0]["lr"], **gap)
                        bar.update(state.step_in_epoch, loss=step_loss, clips_per_s=clips_per_s)
                    window_loss.zero_()
                    window_clips, window_started = 0, time.perf_counter()
                due = cfg.ckpt_every and state.global_step - last_checkpoint_step >= cfg.ckpt_every
                if due and _resumable_here(state, cfg):
                    _checkpoint(ckpt_dir, model, optimizer, scheduler, state, loss_total, generator, runtime, cfg)
                    last_checkpoint_step = state.global_step

        # ---- end of epoch: loss, validation, schedule, checkpoint, plots -----------------------------------
        steps_this_run = state.step_in_epoch - state.loss_count  # loss_count: steps before a resume
        train_loss = distributed.mean_over_ranks(state.loss_sum + float(loss_total),
                                                 state.loss_count + steps_this_run, runtime)
        results: dict[str, float | None] = {}
        if runtime.is_main and val_shards:
            results = evaluate(model, build_loader(val_spec_loader, 0), settings, device)
        distributed.barrier(runtime)
        scheduler.step(train_loss)
        last_epoch = {"epoch": epoch, "step": state.global_step, "stage": curriculum.stage_at(epoch),
                      "mix": curriculum.mix_at(epoch).__dict__, "train_loss": train_loss,
                      "lr": optimizer.param_groups[0]["lr"], "objective": cfg.objective, **results}
        if cfg.audit:
            _write_audit(cfg.out, runtime.rank, epoch, state, seen_keys, model)
        state = Progress(epoch=epoch + 1, global_step=state.global_step)
        _checkpoint(ckpt_dir, model, optimizer, scheduler, state, torch.zeros(()), generator, runtime, cfg,
                    epoch_end=epoch + 1)
        last_checkpoint_step = state.global_step
        if runtime.is_main:
            log.write("epoch", **last_epoch)
            plot_run(cfg.out)
            console.print(_epoch_line(last_epoch))
        distributed.barrier(runtime)
    return TrainResult(cfg.out, state.global_step, last_epoch)


def _resumable_here(state: Progress, cfg: TrainConfig) -> bool:
    """Mid-epoch checkpoints only where the loader's worker round-robin restarts, so resume is exact."""
    return state.step_in_epoch % max(cfg.workers, 1) == 0


def _checkpoint(folder: Path, model: PairModel, optimizer: torch.optim.Optimizer, scheduler: Any,
                state: Progress, loss_total: torch.Tensor, generator: torch.Generator,
                runtime: distributed.Runtime, cfg: TrainConfig, epoch_end: int | None = None) -> None:
    """Save everything needed to continue; every rank's random state is gathered to the main rank."""
    rng = _gather_rng(generator, runtime)
    if not runtime.is_main:
        return
    progress = Progress(state.epoch, state.step_in_epoch, state.global_step, dict(state.consumed),
                        state.loss_sum + float(loss_total) if epoch_end is None else 0.0,
                        state.step_in_epoch if epoch_end is None else 0)
    save_checkpoint(folder, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "progress": progress.__dict__, "rng": rng,
                             "config": cfg.to_dict()}, epoch_end=epoch_end, keep=cfg.keep_checkpoints)


def _gather_rng(generator: torch.Generator, runtime: distributed.Runtime) -> list[dict[str, Any]]:
    """Random states of all ranks (rank order)."""
    mine = rng_state(generator)
    if not runtime.distributed:
        return [mine]
    everyone: list[Any] = [None] * runtime.world_size
    torch.distributed.all_gather_object(everyone, mine)
    return everyone


def _write_audit(run_dir: Path, rank: int, epoch: int, state: Progress, keys: list[str], model: nn.Module) -> None:
    """Per-rank record of an epoch: steps, the sample keys read (since this process started it) and a
    checksum of the weights, to check DDP splits and weight agreement across ranks."""
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    record = {"epoch": epoch, "rank": rank, "steps": state.step_in_epoch, "global_step": state.global_step,
              "keys": keys, "weights_sum": float(flat.sum()), "weights_abs_sum": float(flat.abs().sum())}
    with (run_dir / f"audit-rank{rank}.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _distance_gap(video_emb: torch.Tensor, audio_emb: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
    """Mean embedding distance of positives and negatives in a batch: the gap that training widens."""
    distance = pair_distance(video_emb.float(), audio_emb.float())
    positive = label > 0.5
    return {"dist_pos": float(distance[positive].mean()), "dist_neg": float(distance[~positive].mean())}


def _epoch_line(record: dict[str, Any]) -> str:
    """One readable line per epoch."""
    parts = [f"epoch {record['epoch'] + 1}", f"loss {record['train_loss']:.4f}", f"lr {record['lr']:.2g}",
             f"stage {record['stage']}"]
    for key in ("val_acc_easy", "val_acc_mixed"):
        if record.get(key) is not None:
            parts.append(f"{key} {record[key]:.3f}")
    return " | ".join(parts)
