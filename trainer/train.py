"""The AVTS training loop, top to bottom: build the run → for each epoch: train it, then finish it.

Runs as one process, or as one process per GPU under ``torchrun`` (DDP). :func:`build_run` makes the
model, optimizer, schedule, loaders and resumes; :func:`train_one_epoch` streams batches through
:func:`trainer.step.training_step`; :func:`finish_epoch` validates, steps the schedule, checkpoints and
plots. Everything that changes as training goes is in :class:`TrainState`, which every checkpoint holds
with the model, optimizer, schedule and random states, so a resumed run continues exactly.

The loop itself (:class:`Run`, :func:`start_run`, :func:`train_one_epoch`, :func:`finish_epoch`,
:func:`save_run`) does not know what it trains: a :class:`Task` does the step, names bad samples, evaluates
and says what checkpoints and records hold. :class:`SyncTask` is `avts-train`'s (synchronization, §2);
`trainer.finetune` has the classification task of `avts-finetune` (§3.3, §3.5).
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from rich.console import Console
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from avts import storage
from avts.atomic import atomic_write_text
from avts.folder_lock import FolderLockError, hold
from avts.interrupts import interrupts_deferred
from avts.progress import StepProgress
from avts.schema import FEATURE_RATE, VIDEO_FPS
from avts.seeds import stable_int
from avts.stats import FeatureStats
from trainer import distributed
from trainer.augment import AudioNormalizer
from trainer.checkpoint import (
    LAST,
    TRAIN_TOOL,
    CheckpointError,
    checkpoint_tool,
    load_checkpoint,
    load_resumable,
    restore_rng,
    rng_state,
    save_checkpoint,
    weights_are_finite,
)
from trainer.config import LoopSettings, TrainConfig
from trainer.curriculum import Curriculum
from trainer.data import WINDOW, Batch, LoaderSpec, build_loader
from trainer.evaluate import evaluate
from trainer.loss import pair_distance
from trainer.metrics import MetricsLog, plot_run
from trainer.models import AVTSModel, build_avts
from trainer.optim import PlateauSchedule, build_optimizer, plateau_schedule
from trainer.sampler import HARD, POSITIVE, SUPER_HARD, NegativeMix, PairSampler
from trainer.shardlist import default_stats_path, default_val_spec, expand_shards
from trainer.step import InputSettings, StepOutput, training_step

RUN_LOCK = ".avts-run.lock"
# settings a resumed run may change: where the data and run are, how long it trains, how it runs and reports
FREE_ON_RESUME = frozenset(
    {
        "out", "resume", "epochs", "device", "compile", "dist_timeout", "plain", "log_every", "audit",
        "keep_checkpoints", "ckpt_every", "max_bad_steps", "workers", "shards", "val_shards", "stats",
        "init_from", "init", "test_shards", "classes", "test_clips", "eval_every",
    }
)  # fmt: skip


class TrainError(Exception):
    """Training cannot start or cannot go on; the message says why and what to do."""


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    consumed: dict[int, int] = field(default_factory=dict)  # batches delivered per loader worker this epoch
    loss_sum: float = 0.0  # loss summed over this epoch's applied steps taken before the last checkpoint (all ranks)
    loss_count: int = 0  # and how many there were
    bad_steps: int = 0  # steps whose gradient was not finite, over the whole run


class StepResult(Protocol):
    """What the loop reads of a step's output (device tensors: reading them is deferred to log time)."""

    @property
    def loss(self) -> torch.Tensor: ...
    @property
    def applied(self) -> torch.Tensor: ...  # bool scalar: the gradient was finite and the update used it


class Task(Protocol):
    """What a run trains: the parts of the loop that differ between `avts-train` and `avts-finetune`."""

    shown: tuple[str, ...]  # epoch-record values printed on each epoch's line

    def start_epoch(self, run: Run, epoch: int) -> None:
        """Called on every rank before an epoch's first step (also when resuming inside it)."""

    def step(self, run: Run, batch: Batch, epoch: int) -> StepResult:
        """One training step on a batch already on the device."""

    def culprits(self, out: Any, keys: list[str]) -> list[str]:
        """Keys of the samples whose inputs were not finite, for a step whose update was dropped."""

    def step_record(self, out: Any) -> dict[str, float]:
        """Values of a step record besides loss, speed and LR (main rank, at log time)."""

    def evaluate(self, run: Run, epoch: int) -> dict[str, Any]:
        """End-of-epoch evaluation on the main rank; its values go into the epoch record."""

    def epoch_record(self, epoch: int) -> dict[str, Any]:
        """What else describes an epoch in its record."""

    def checkpoint_content(self) -> dict[str, Any]:
        """What a checkpoint holds besides weights, optimizer, schedule, state and random states."""

    def plot(self, run_dir: Path) -> None:
        """Redraw the run's PNG curves from its metrics."""


@dataclass
class Run:
    """Everything a training run is made of; built once by :func:`start_run`."""

    cfg: LoopSettings
    runtime: distributed.Runtime
    console: Console
    model: nn.Module
    forward: nn.Module  # the model as called in a step: wrapped by DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    schedule: PlateauSchedule
    generator: torch.Generator  # the device generator of the step's randomness (pairs, augmentation)
    train_loader: LoaderSpec
    task: Task
    steps_cap: int | None  # steps per epoch with --epoch-size, else None (until the shards run out)
    log: MetricsLog
    state: TrainState
    audit_keys: list[str] = field(default_factory=list)  # sample keys read this epoch (with --audit)

    @property
    def device(self) -> torch.device:
        """This process's device."""
        return self.runtime.device

    @property
    def checkpoints(self) -> Path:
        """The checkpoint folder."""
        return self.cfg.out / "checkpoints"


@dataclass
class EpochStats:
    """What one epoch of training measured (the same on every rank)."""

    train_loss: float
    steps: int


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_dir: Path
    global_step: int
    last_epoch: dict[str, Any]


def train(cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    """Train (or continue training with ``cfg.resume``) and return where the run ended."""
    runtime = distributed.setup(cfg.device, cfg.dist_timeout)
    console = console or Console(stderr=True, soft_wrap=True)
    try:
        with run_folder_held(cfg.out, runtime, "avts-train"):
            run = build_run(cfg, runtime, console)
            record: dict[str, Any] = {}
            for epoch in range(run.state.epoch, cfg.epochs):
                stats = train_one_epoch(run, epoch)
                record = finish_epoch(run, epoch, stats)
            return TrainResult(cfg.out, run.state.global_step, record)
    finally:
        distributed.teardown(runtime)


@contextlib.contextmanager
def run_folder_held(out: Path, runtime: distributed.Runtime, tool: str) -> Iterator[None]:
    """On rank 0, hold the run folder for the whole run: a second job writing the same ``--out`` (which would
    interleave metrics and overwrite checkpoints) is refused at once. The lock goes with rank 0's process, so a
    job that torchrun restarts takes it again. A full disk while the run writes is a :class:`TrainError` saying
    what to do (checkpoints are written atomically: those already saved are intact)."""
    if not runtime.is_main:
        yield
        return
    try:
        with hold(out, RUN_LOCK, tool, "choose another --out"):
            yield
    except FolderLockError as error:
        raise TrainError(str(error)) from None
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        written = error.filename2 or error.filename
        raise TrainError(
            f"no space left on device writing in {Path(written).parent if written else out}: free some space and "
            "rerun the same command with --resume; the checkpoints already saved are intact"
        ) from None


def build_run(cfg: TrainConfig, runtime: distributed.Runtime, console: Console) -> Run:
    """Data, model, optimizer, schedule, pair sampler and run folder; resumed from the last checkpoint (with
    ``--resume``)."""
    shards = expand_shards(cfg.shards)
    val_spec = cfg.val_shards or default_val_spec(shards)
    val_shards = expand_shards(val_spec, "val") if val_spec else []
    stats_path = cfg.stats or default_stats_path(shards)
    if stats_path is None or not storage.exists(stats_path):
        raise TrainError(
            f"no normalization stats{f' at {stats_path}' if stats_path else ''}: pass --stats "
            "manifests/stats.json (a path or URL, written by avts-ingest)"
        )
    stats = FeatureStats.load(stats_path)
    device = runtime.device
    on_gpu = device.type == "cuda"
    context = round(cfg.audio_context * FEATURE_RATE)
    train_loader = LoaderSpec(
        shards,
        cfg.batch_size,
        VIDEO_FPS,
        context,
        cfg.seed,
        cfg.workers,
        cfg.shuffle_buffer,
        training=True,
        resampled=cfg.epoch_size is not None,
        pin_memory=on_gpu,
    )
    val_loader = (
        LoaderSpec(
            val_shards,
            cfg.batch_size,
            VIDEO_FPS,
            context,
            cfg.seed,
            min(cfg.workers, len(val_shards)),
            training=False,
            clips_per_video=cfg.val_clips,
            pin_memory=on_gpu,
        )
        if val_shards
        else None
    )

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_avts(cfg.model_spec()).to(device)
    if on_gpu:
        model.video.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    if cfg.init_from is not None:
        init_weights(model, cfg.init_from, device)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    schedule = plateau_schedule(optimizer, cfg.plateau_patience, cfg.lr_factor)
    curriculum = Curriculum.parse(cfg.curriculum) if cfg.curriculum else Curriculum.paper_default(cfg.epochs)
    sampler = PairSampler(WINDOW, round(cfg.hard_gap * FEATURE_RATE), round(cfg.super_hard_offset * FEATURE_RATE))
    settings = InputSettings(cfg.crop_size, cfg.crop_scales, AudioNormalizer(stats.mean, stats.std, device), sampler)
    generator = torch.Generator(device).manual_seed(stable_int("pairs", cfg.seed, runtime.rank))
    task = SyncTask(cfg, model, curriculum, settings, stats, val_loader)
    banner = (
        f"[bold]avts-train[/] {runtime.world_size} process(es) on {device}; curriculum "
        f"{curriculum.describe()}; {len(shards)} train / {len(val_shards)} val shards"
    )
    return start_run(cfg, runtime, console, model, optimizer, schedule, generator, train_loader, task, banner)


def start_run(
    cfg: LoopSettings,
    runtime: distributed.Runtime,
    console: Console,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: PlateauSchedule,
    generator: torch.Generator,
    train_loader: LoaderSpec,
    task: Task,
    banner: str,
) -> Run:
    """Resume (``--resume``), write ``config.json``, announce the run and wrap the model for DDP / compile."""
    tool = checkpoint_tool(task.checkpoint_content())
    state = resume_state(cfg, model, optimizer, schedule, generator, runtime, console, tool)
    check_same_start(state, runtime, cfg.out)
    if runtime.is_main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg.out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        console.print(banner)
        console.print_json(data=cfg.to_dict())
    on_gpu = runtime.device.type == "cuda"
    ddp = (
        DistributedDataParallel(model, device_ids=[runtime.device.index] if on_gpu else None)
        if runtime.distributed
        else model
    )
    forward = cast(nn.Module, torch.compile(ddp)) if cfg.compile else ddp  # compile wraps a module in a module
    steps_cap = cfg.epoch_size // (cfg.batch_size * runtime.world_size) if cfg.epoch_size else None
    return Run(
        cfg,
        runtime,
        console,
        model,
        forward,
        optimizer,
        schedule,
        generator,
        train_loader,
        task,
        steps_cap,
        MetricsLog(cfg.out),
        state,
    )


def init_weights(model: AVTSModel, checkpoint: Path, device: torch.device) -> None:
    """Start from the weights of another run (all but a sync head the checkpoint lacks)."""
    try:
        weights = load_checkpoint(checkpoint, device)["model"]
    except CheckpointError as error:
        raise TrainError(str(error)) from None
    try:
        missing, _ = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:
        raise TrainError(f"{checkpoint} holds weights of another shape: {str(error)[:300]}") from None
    if any(not name.startswith("head.") for name in missing):
        raise TrainError(f"{checkpoint} does not hold AVTS weights for this architecture")


def fresh_state(cfg: LoopSettings, runtime: distributed.Runtime) -> TrainState:
    """The state of a new run; the records of a run stopped there before its first checkpoint are dropped."""
    if runtime.is_main:
        MetricsLog(cfg.out).keep_until(0, 0)
    return TrainState()


def check_same_settings(saved: dict[str, Any], cfg: LoopSettings, mid_epoch: bool) -> None:
    """Refuse a ``--resume`` whose settings differ from the ones the checkpoint was trained with, but for those
    in :data:`FREE_ON_RESUME`: a new ``--lr`` would be overridden by the optimizer's saved one without a word, a
    new ``--batch-size`` (or, mid-epoch, ``--workers``) would resume at the wrong sample."""
    now = cfg.to_dict()
    free = FREE_ON_RESUME - {"workers"} if mid_epoch else FREE_ON_RESUME
    changed = [
        f"--{name.replace('_', '-')} {now[name]} (the run's: {saved[name]})"
        for name in sorted(now.keys() & saved.keys())
        if name not in free and now[name] != saved[name]
    ]
    if changed:
        raise TrainError(
            f"--resume continues the run in {cfg.out} with the settings it was started with, and these differ: "
            f"{'; '.join(changed)}. Pass the run's values, or start a new run in another --out"
        )


def resume_state(
    cfg: LoopSettings,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: PlateauSchedule,
    generator: torch.Generator,
    runtime: distributed.Runtime,
    console: Console,
    tool: str | None,
) -> TrainState:
    """A fresh state, or (``--resume``) the one of the newest readable checkpoint with everything it holds;
    ``tool``: the tool this run's checkpoints come from (:func:`trainer.checkpoint.checkpoint_tool`), the only
    one whose runs it continues."""
    folder = cfg.out / "checkpoints"
    if not cfg.resume:
        if folder.exists() and any(folder.glob("*.pt")):
            raise TrainError(f"{cfg.out} already holds a run: pass --resume to continue it, or choose another --out")
        return fresh_state(cfg, runtime)
    try:
        saved = load_resumable(folder, runtime.device, console)
    except CheckpointError as error:
        raise TrainError(str(error)) from None
    if saved is None:
        console.print(f"[bold yellow]--resume: no checkpoint in {folder}; starting a new run there")
        return fresh_state(cfg, runtime)
    found = checkpoint_tool(saved)
    if found != tool:  # another tool's run: comparing its settings with ours would only confuse
        hint = f" (to fine-tune from its weights: --init {folder / LAST})" if found == TRAIN_TOOL else ""
        raise TrainError(
            f"--resume: {cfg.out} holds {f'an {found}' if found else 'an unknown kind of'} run, which this command "
            f"cannot continue; start a new run in another --out{hint}"
        )
    check_same_settings(saved.get("config", {}), cfg, mid_epoch=saved["state"]["step_in_epoch"] > 0)
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as error:
        raise TrainError(
            f"the checkpoint in {folder} holds a model of another shape than this run's (were "
            f"architecture flags changed?): {str(error)[:300]}"
        ) from None
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["scheduler"])
    state = TrainState(**saved["state"])
    if not runtime.is_main:  # the loss so far is the sum over all ranks (see save_run): counted once, on rank 0
        state.loss_sum, state.loss_count = 0.0, 0
    restore_rng(saved["rng"][min(runtime.rank, len(saved["rng"]) - 1)], generator)
    if runtime.is_main:
        MetricsLog(cfg.out).keep_until(state.global_step, state.epoch)
        console.print(
            f"resuming at epoch {state.epoch + 1}, step {state.step_in_epoch} of it (global step {state.global_step})"
        )
        if len(saved["rng"]) != runtime.world_size:
            console.print(
                f"[bold yellow]warning: the checkpoint was written by {len(saved['rng'])} process(es) and "
                f"this run has {runtime.world_size}: each process now reads another part of the data "
                f"(mid-epoch, some samples of this epoch may be read twice or not at all), so the run "
                f"will not match an uninterrupted one; resume with the same number of processes for that"
            )
    return state


def check_same_start(state: TrainState, runtime: distributed.Runtime, run_dir: Path) -> None:
    """Stop when the ranks did not resume from the same checkpoint (a run folder the nodes do not share):
    they would train out of step and hang."""
    starts = distributed.gather_objects((state.epoch, state.step_in_epoch, state.global_step), runtime)
    if len(set(starts)) > 1:
        where = ", ".join(f"rank {rank} at global step {start[2]}" for rank, start in enumerate(starts))
        raise TrainError(
            f"the ranks start from different checkpoints ({where}): --out {run_dir} must be one folder "
            f"that every node sees (shared storage), not a local folder per node"
        )


def train_one_epoch(run: Run, epoch: int) -> EpochStats:
    """Stream this rank's batches through the training step; checkpoint every ``--ckpt-every`` steps."""
    cfg, state = run.cfg, run.state
    run.task.start_epoch(run, epoch)
    run.model.train()
    batches = iter(build_loader(run.train_loader, epoch, skips=dict(state.consumed)))
    losses = LossTally(run.device)
    window = LogWindow()
    run.audit_keys = []
    last_checkpoint = state.global_step
    with StepProgress(
        f"epoch {epoch + 1}/{cfg.epochs}", run.steps_cap, run.console, enabled=run.runtime.is_main, plain=cfg.plain
    ) as bar:
        while run.steps_cap is None or state.step_in_epoch < run.steps_cap:
            batch = next(batches, None)
            if not distributed.all_ranks_true(batch is not None, run.runtime):
                break  # every rank stops at the same step
            assert batch is not None
            out = run.task.step(run, batch.to(run.device), epoch)
            state.step_in_epoch += 1
            state.global_step += 1
            state.consumed[batch.worker] = state.consumed.get(batch.worker, 0) + 1
            losses.add(out)
            window.add(out, batch)
            if cfg.audit:
                run.audit_keys.extend(batch.keys)
            if state.global_step % cfg.log_every == 0:
                log_window(run, epoch, window, bar, out)
            due = cfg.ckpt_every and state.global_step - last_checkpoint >= cfg.ckpt_every
            if due and resumable_here(state, cfg):
                check_bad_steps(run, window)
                save_run(run, losses)
                last_checkpoint = state.global_step
    check_bad_steps(run, window)
    if state.step_in_epoch == 0:
        raise TrainError(
            f"epoch {epoch + 1} had no training step: the shards hold fewer than --batch-size "
            f"{cfg.batch_size} usable samples per process (after splitting over ranks and workers; samples that "
            "cannot be used, or were ingested without audible audio, are skipped with a warning above)"
        )
    total, count = losses.totals(state)
    return EpochStats(distributed.mean_over_ranks(total, count, run.runtime), state.step_in_epoch)


def finish_epoch(run: Run, epoch: int, stats: EpochStats) -> dict[str, Any]:
    """Validate, step the LR schedule, record, checkpoint and plot; returns the epoch's record."""
    results = run.task.evaluate(run, epoch) if run.runtime.is_main else {}
    distributed.barrier(run.runtime)
    run.schedule.step(stats.train_loss)
    record = {
        "epoch": epoch,
        "step": run.state.global_step,
        **run.task.epoch_record(epoch),
        "train_loss": stats.train_loss,
        "lr": run.optimizer.param_groups[0]["lr"],
        **results,
    }
    if run.cfg.audit:
        write_audit(run, epoch)
    run.state = TrainState(epoch=epoch + 1, global_step=run.state.global_step, bad_steps=run.state.bad_steps)
    with interrupts_deferred():  # a Ctrl-C lands after the epoch's record, checkpoint and plots, not inside them
        if run.runtime.is_main:  # before the checkpoint: a run stopped between the two drops it on resume
            run.log.write("epoch", **record)
        save_run(run, None, epoch_end=epoch + 1)
        if run.runtime.is_main:
            run.task.plot(run.cfg.out)
            run.console.print(epoch_line(record, run.task.shown))
    distributed.barrier(run.runtime)
    return record


class LossTally:
    """The epoch's loss, summed on the device over the steps whose update was applied (no host sync)."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.count = torch.zeros((), device=device)

    def add(self, out: StepResult) -> None:
        """Count one step."""
        self.total += torch.where(out.applied, out.loss.detach(), 0.0)
        self.count += out.applied.float()

    def totals(self, state: TrainState) -> tuple[float, int]:
        """Sum and count of the epoch so far, including the steps taken before a resume."""
        return state.loss_sum + float(self.total), state.loss_count + int(self.count)


@dataclass
class LogWindow:
    """The steps since the last log record: their loss and clips, and what is needed to name bad steps."""

    loss: float | torch.Tensor = 0.0
    clips: int = 0
    started: float = field(default_factory=time.perf_counter)
    steps: list[tuple[list[str], StepResult]] = field(default_factory=list)

    def add(self, out: StepResult, batch: Batch) -> None:
        """Count one step (tensors stay on the device)."""
        self.loss = self.loss + torch.where(out.applied, out.loss.detach(), 0.0)
        self.clips += len(batch.keys)
        self.steps.append((batch.keys, out))


def log_window(run: Run, epoch: int, window: LogWindow, bar: StepProgress, out: StepResult) -> None:
    """Write a step record and update the bar (one host sync per log interval); name any bad steps."""
    steps = len(window.steps)
    check_bad_steps(run, window)
    elapsed = time.perf_counter() - window.started
    step_loss = float(window.loss) / steps
    clips_per_s = window.clips * run.runtime.world_size / elapsed
    if run.runtime.is_main:
        run.log.write(
            "step",
            step=run.state.global_step,
            epoch=epoch,
            loss=step_loss,
            clips_per_s=clips_per_s,
            lr=run.optimizer.param_groups[0]["lr"],
            **run.task.step_record(out),
        )
        bar.update(run.state.step_in_epoch, loss=step_loss, clips_per_s=clips_per_s)
    window.loss, window.clips, window.started = 0.0, 0, time.perf_counter()


def check_bad_steps(run: Run, window: LogWindow) -> None:
    """Name the samples of steps whose gradient was not finite; stop when there were too many."""
    if not window.steps:
        return
    applied = torch.stack([out.applied for _, out in window.steps]).cpu().tolist()
    for (keys, out), ok in zip(window.steps, applied, strict=True):
        if ok:
            continue
        run.state.bad_steps += 1
        culprits = run.task.culprits(out, keys)
        why = (
            f"non-finite audio features in {', '.join(culprits)}"
            if culprits
            else "non-finite loss or gradient with finite inputs (diverging: lower --lr?)"
        )
        run.console.print(
            f"[bold yellow]warning: a step's update was dropped near global step {run.state.global_step}: {why}"
        )
    window.steps.clear()
    if run.state.bad_steps > run.cfg.max_bad_steps:
        raise TrainError(
            f"{run.state.bad_steps} steps had a non-finite loss or gradient (more than "
            f"--max-bad-steps {run.cfg.max_bad_steps}); the last good checkpoint is kept in "
            f"{run.checkpoints}"
        )


def resumable_here(state: TrainState, cfg: LoopSettings) -> bool:
    """Mid-epoch checkpoints only where the loader's worker round-robin restarts, so resume is exact."""
    return state.step_in_epoch % max(cfg.workers, 1) == 0


def save_run(run: Run, losses: LossTally | None, epoch_end: int | None = None) -> None:
    """Checkpoint the run (every rank's random state is gathered to the main rank, which writes).

    Weights that are not finite are never saved: the previous checkpoint stays the newest.
    """
    rng = gather_rng(run.generator, run.runtime)
    # mid-epoch, the loss so far of every rank: the checkpoint holds their sum (taken back by the main rank only)
    totals = distributed.gather_objects(losses.totals(run.state), run.runtime) if losses is not None else []
    if not run.runtime.is_main:
        return
    if not weights_are_finite(run.model):
        raise TrainError(f"the weights are no longer finite; not saving them over {run.checkpoints}; lower --lr")
    state = run.state
    if losses is not None:  # mid-epoch: the loss so far travels with the checkpoint
        total, count = sum(total for total, _ in totals), sum(count for _, count in totals)
        state = TrainState(**{**asdict(state), "loss_sum": total, "loss_count": count})
    with interrupts_deferred():  # a Ctrl-C lands once the checkpoint is written, not inside torch.save
        save_checkpoint(
            run.checkpoints,
            {
                **run.task.checkpoint_content(),
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.schedule.state_dict(),
                "state": asdict(state),
                "rng": rng,
                "config": run.cfg.to_dict(),
            },
            epoch_end=epoch_end,
            keep=run.cfg.keep_checkpoints,
        )


def gather_rng(generator: torch.Generator, runtime: distributed.Runtime) -> list[dict[str, Any]]:
    """Random states of all ranks (rank order)."""
    mine = rng_state(generator)
    if not runtime.distributed:
        return [mine]
    everyone: list[Any] = [None] * runtime.world_size
    torch.distributed.all_gather_object(everyone, mine)
    return everyone


def write_audit(run: Run, epoch: int) -> None:
    """Per-rank record of an epoch: steps, the sample keys read and a checksum of the weights, to check DDP
    splits and weight agreement across ranks."""
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten().cpu() for p in run.model.parameters()])
    record = {
        "epoch": epoch,
        "rank": run.runtime.rank,
        "steps": run.state.step_in_epoch,
        "global_step": run.state.global_step,
        "weights_sum": float(flat.sum()),
        "weights_abs_sum": float(flat.abs().sum()),
        "keys": run.audit_keys,
    }
    with (run.cfg.out / f"audit-rank{run.runtime.rank}.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def distance_gap(video_emb: torch.Tensor, audio_emb: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
    """Mean embedding distance of positives and negatives in a batch: the gap that training widens."""
    distance = pair_distance(video_emb.float(), audio_emb.float())
    positive = label > 0.5
    return {"dist_pos": float(distance[positive].mean()), "dist_neg": float(distance[~positive].mean())}


def epoch_line(record: dict[str, Any], shown: tuple[str, ...]) -> str:
    """One readable line per epoch: epoch, loss, LR and the ``shown`` values the record has."""
    parts = [f"epoch {record['epoch'] + 1}", f"loss {record['train_loss']:.4f}", f"lr {record['lr']:.2g}"]
    for key in shown:
        value = record.get(key)
        if value is not None:
            parts.append(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}")
    if "val_acc_easy" in shown and "val_pairs_easy" in record and record.get("val_acc_easy") is None:
        parts.append(
            f"no val accuracy: {record['val_pairs_easy']:.0f} validation pairs, too few validation videos for two "
            "halves (ingest with a larger --val-fraction)"
        )
    return " | ".join(parts)


class UnmetCurriculumWarning(UserWarning):
    """Hard negatives asked for could not be made from the data and options given."""


@dataclass
class SyncTask:
    """What `avts-train` trains: audio-visual synchronization with the curriculum's negatives (Eq. 1), or the
    sync head's cross-entropy (§3.2); validated by AVTS accuracy."""

    cfg: TrainConfig
    model: AVTSModel
    curriculum: Curriculum
    settings: InputSettings
    stats: FeatureStats
    val_loader: LoaderSpec | None
    shown: tuple[str, ...] = ("stage", "val_acc_easy", "val_acc_mixed")
    asked: NegativeMix | None = field(default=None, init=False)  # the mix of the epoch being trained
    warned: bool = field(default=False, init=False)

    def start_epoch(self, run: Run, epoch: int) -> None:
        """At the start of a curriculum stage, start the plateau tracking afresh (see :mod:`trainer.optim`)."""
        if (
            epoch > 0
            and self.curriculum.stage_at(epoch) != self.curriculum.stage_at(epoch - 1)
            and run.state.step_in_epoch == 0
        ):
            run.schedule = plateau_schedule(run.optimizer, self.cfg.plateau_patience, self.cfg.lr_factor)

    def step(self, run: Run, batch: Batch, epoch: int) -> StepOutput:
        """:func:`trainer.step.training_step` with the epoch's negative mix."""
        self.asked = self.curriculum.mix_at(epoch)
        return training_step(
            run.forward,
            run.optimizer,
            batch,
            self.settings,
            self.asked,
            run.generator,
            self.cfg.margin,
        )

    def culprits(self, out: StepOutput, keys: list[str]) -> list[str]:
        """The videos whose audio went into a pair with non-finite features."""
        return sorted({keys[owner] for owner in out.pairs.source[out.bad_audio_rows].cpu().tolist()})

    def step_record(self, out: StepOutput) -> dict[str, float]:
        """The positive and negative embedding distances of the step's batch, and the shares of its negatives that
        were hard and super-hard: a clip without audio far enough from it for a hard negative gets an easy one
        instead, which is said once (asking for hard negatives that cannot be made trained on easy ones, silently)."""
        with torch.no_grad():
            record = distance_gap(out.video_emb, out.audio_emb, out.pairs.label)
            negatives = max(int((out.pairs.kind != POSITIVE).sum()), 1)
            record["neg_hard_share"] = int((out.pairs.kind == HARD).sum()) / negatives
            record["neg_super_hard_share"] = int((out.pairs.kind == SUPER_HARD).sum()) / negatives
        wanted = self.asked.hard + self.asked.super_hard if self.asked is not None else 0.0
        made = record["neg_hard_share"] + record["neg_super_hard_share"]
        if wanted > 0 and made < wanted / 2 and not self.warned:
            self.warned = True
            warnings.warn(
                f"the curriculum asks for {wanted:.0%} hard negatives, but only {made:.0%} of this step's negatives "
                f"could be hard: a hard negative needs audio at least --hard-gap {self.cfg.hard_gap} s from its clip "
                f"within --audio-context {self.cfg.audio_context} s of audio; the others were easy negatives "
                "(metrics.jsonl: neg_hard_share)",
                UnmetCurriculumWarning,
                stacklevel=1,
            )
        return record

    def evaluate(self, run: Run, epoch: int) -> dict[str, Any]:
        """AVTS accuracy on the validation shards (nothing without them)."""
        if self.val_loader is None:
            return {}
        return evaluate(self.model, build_loader(self.val_loader, 0), self.settings, run.device)

    def epoch_record(self, epoch: int) -> dict[str, Any]:
        """Curriculum stage, negative mix and objective."""
        return {
            "stage": self.curriculum.stage_at(epoch),
            "mix": asdict(self.curriculum.mix_at(epoch)),
            "objective": self.cfg.objective,
        }

    def checkpoint_content(self) -> dict[str, Any]:
        """The model's shape and the audio normalization (see :func:`trainer.checkpoint.load_trained`)."""
        return {"model_spec": self.cfg.model_spec().to_dict(), "stats": self.stats.to_dict()}

    def plot(self, run_dir: Path) -> None:
        """Loss, AVTS accuracy and LR curves."""
        plot_run(run_dir)
