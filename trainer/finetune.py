"""`avts-finetune` as a library call: AVTS subnets fine-tuned for classification (§3.3, §3.5), in the
`avts-train` loop.

build the run (:func:`build_finetune_run`: shards, class list, backbone from ``--init``, classifier) → for each
epoch: :func:`trainer.train.train_one_epoch` (random 1-s clips and their aligned 1-s audio, the
:class:`ClassifyTask`'s cross-entropy step), :func:`trainer.train.finish_epoch` (test, LR schedule,
checkpoint, records, plots) → the final test: ``results.json`` and ``confusion.png``.

Checkpoints, exact resume, DDP under ``torchrun``, bad-step handling and the metrics log are the training
loop's own. The class list is the sorted labels of the training videos (the first folder level under the
ingest source); it travels in every checkpoint, and a test video of a class no training video has is an
error, as is a training sample without a label.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from avts import storage
from avts.atomic import atomic_write_text
from avts.schema import VIDEO_FPS
from avts.seeds import stable_int
from avts.stats import FeatureStats
from trainer import distributed
from trainer.augment import AudioNormalizer
from trainer.checkpoint import FINETUNE_TOOL, CheckpointError, checkpoint_tool, load_checkpoint
from trainer.data import WINDOW, Batch, LoaderSpec, build_loader
from trainer.finetune_config import SCRATCH, FinetuneConfig
from trainer.finetune_eval import ClassificationResult, plot_finetune, predict_clips, score_videos, write_results
from trainer.models import ActionClassifier, AVTSModel, ClassifierSpec, ModelSpec, build_avts, classifier_from
from trainer.optim import build_optimizer, plateau_schedule
from trainer.sampler import PairSampler
from trainer.shardlist import default_stats_path, expand_shards, shard_folder
from trainer.step import InputSettings, autocast_for, drop_nonfinite_gradient, make_video, nonfinite_rows
from trainer.train import Run, TrainError, finish_epoch, run_folder_held, start_run, train_one_epoch

CLASSES_FILE = "classes.txt"


@dataclass
class FinetuneResult:
    """What a finished fine-tuning run reports (``test`` only on the main rank)."""

    run_dir: Path
    global_step: int
    test: ClassificationResult | None


def finetune(cfg: FinetuneConfig, console: Console | None = None) -> FinetuneResult:
    """Fine-tune (or continue with ``cfg.resume``), test, and write ``results.json``."""
    runtime = distributed.setup(cfg.device, cfg.dist_timeout)
    console = console or Console(stderr=True, soft_wrap=True)
    try:
        with run_folder_held(cfg.out, runtime, "avts-finetune"):
            run = build_finetune_run(cfg, runtime, console)
            for epoch in range(run.state.epoch, cfg.epochs):
                stats = train_one_epoch(run, epoch)
                finish_epoch(run, epoch, stats)
            result = final_test(run) if runtime.is_main else None
            distributed.barrier(runtime)
            return FinetuneResult(cfg.out, run.state.global_step, result)
    finally:
        distributed.teardown(runtime)


@dataclass
class Backbone:
    """The AVTS model whose subnets the classifier starts from, and the audio normalization to use."""

    model: AVTSModel
    spec: ModelSpec
    stats: FeatureStats


def build_finetune_run(cfg: FinetuneConfig, runtime: distributed.Runtime, console: Console) -> Run:
    """Shards, class list, backbone, classifier, optimizer and run folder; resumed with ``--resume``."""
    shards = expand_shards(cfg.shards)
    test_spec = cfg.test_shards or default_test_spec(shards)
    if test_spec is None:
        raise TrainError(
            "no test shards: pass --test-shards (avts-ingest --split-file writes test-NNNN.tar "
            "beside the training shards)"
        )
    test_shards = expand_shards(test_spec, "test")
    classes = class_list(cfg, shards, test_shards)
    check_classes_unchanged(cfg, classes)
    device = runtime.device
    torch.manual_seed(cfg.seed)  # identical scratch weights on every rank
    backbone = load_backbone(cfg, shards)
    torch.manual_seed(stable_int("head", cfg.seed))  # the same new head on every rank, for scratch and --init alike
    spec = ClassifierSpec(replace(backbone.spec, sync_head=False), cfg.modality, len(classes), cfg.dropout)
    model = classifier_from(spec, backbone.model).to(device)
    if device.type == "cuda" and model.video is not None:
        model.video.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    schedule = plateau_schedule(optimizer, cfg.plateau_patience, cfg.lr_factor)
    # make_video reads the crop settings; classification draws no audio-visual pairs, so the sampler is unused
    settings = InputSettings(
        cfg.crop_size, cfg.crop_scales, AudioNormalizer(backbone.stats.mean, backbone.stats.std, device), PairSampler()
    )
    generator = torch.Generator(device).manual_seed(stable_int("finetune", cfg.seed, runtime.rank))
    on_gpu = device.type == "cuda"
    needs_audio = cfg.modality != "video"  # a video-only fine-tune also uses the videos kept without audio
    train_loader = LoaderSpec(
        shards,
        cfg.batch_size,
        VIDEO_FPS,
        WINDOW,
        cfg.seed,
        cfg.workers,
        cfg.shuffle_buffer,
        training=True,
        resampled=cfg.epoch_size is not None,
        pin_memory=on_gpu,
        needs_audio=needs_audio,
    )
    test_loader = LoaderSpec(
        test_shards,
        cfg.batch_size,
        VIDEO_FPS,
        WINDOW,
        cfg.seed,
        min(cfg.workers, len(test_shards)),
        cfg.shuffle_buffer,
        training=False,
        clips_per_video=cfg.test_clips,
        pin_memory=on_gpu,
        needs_audio=needs_audio,
    )
    task = ClassifyTask(cfg, model, classes, settings, backbone.stats, test_loader)
    banner = (
        f"[bold]avts-finetune[/] {runtime.world_size} process(es) on {device}; {cfg.modality} from "
        f"{'scratch' if cfg.init == SCRATCH else cfg.init}; {len(classes)} classes; {len(shards)} train / "
        f"{len(test_shards)} test shards"
    )
    run = start_run(cfg, runtime, console, model, optimizer, schedule, generator, train_loader, task, banner)
    if runtime.is_main:
        atomic_write_text(cfg.out / CLASSES_FILE, "".join(f"{name}\n" for name in classes))
    return run


def default_test_spec(train_shards: list[str]) -> str | None:
    """``test-*.tar`` beside the training shards, if there are any."""
    folder = shard_folder(train_shards)
    if folder is None or not any(folder.glob("test-[0-9]*.tar")):
        return None
    return str(folder)


def class_list(cfg: FinetuneConfig, shards: list[str], test_shards: list[str]) -> list[str]:
    """The classes: ``--classes``, or the sorted labels of the training videos in the manifest; checked against
    the manifest's training and test labels where it is available."""
    videos = manifest_videos(shards)
    if cfg.classes is not None:
        classes = [line.strip() for line in cfg.classes.read_text().splitlines() if line.strip()]
        if len(set(classes)) != len(classes):
            raise TrainError(f"--classes {cfg.classes} names a class twice")
    elif videos is None:
        raise TrainError(
            "no class list: pass --classes FILE (one class per line), or keep avts-ingest's "
            "manifests/videos.parquet beside the shard folder"
        )
    else:
        classes = sorted(set(labels_of(videos, shards, "training")))
    if len(classes) < 2:
        raise TrainError(f"classification needs at least 2 classes, the training videos have {len(classes)}")
    if videos is not None:
        known = set(classes)
        for role, chosen in (("training", shards), ("test", test_shards)):
            unknown = sorted(set(labels_of(videos, chosen, role)) - known)
            if unknown:
                raise TrainError(
                    f"{role} videos have labels that are not classes of the training videos: "
                    f"{', '.join(map(repr, unknown[:10]))}"
                )
    return classes


def manifest_videos(shards: list[str]) -> pd.DataFrame | None:
    """The ingested videos listed in ``manifests/videos.parquet`` beside the shard folder, or None."""
    folder = shard_folder(shards)
    path = folder.parent / "manifests" / "videos.parquet" if folder is not None else None
    if path is None or not path.exists():
        return None
    videos = pd.read_parquet(path, columns=["path", "label", "status", "shard"])
    return videos[videos.status == "ok"]


def labels_of(videos: pd.DataFrame, shards: list[str], role: str) -> list[str]:
    """The labels of the manifest's videos in ``shards``; an error when there are none, or unlabeled ones."""
    names = {Path(shard).name for shard in shards}
    chosen = videos[videos.shard.isin(names)]
    if chosen.empty:
        raise TrainError(
            f"the manifest beside the shards lists none of the {role} shards "
            f"({', '.join(sorted(names)[:3])}...); pass --classes FILE"
        )
    unlabeled = chosen[chosen.label.isna()]
    if len(unlabeled):
        raise TrainError(
            f"{len(unlabeled)} of the {len(chosen)} {role} videos have no label (e.g. "
            f"{unlabeled.path.iloc[0]!r}): avts-ingest takes the label from the first folder level "
            "under --src, so put each class's videos in a folder named after it and ingest again"
        )
    return [str(label) for label in chosen.label]


def check_classes_unchanged(cfg: FinetuneConfig, classes: list[str]) -> None:
    """With ``--resume``: the class list must be the one the run started with (else labels would shift)."""
    path = cfg.out / CLASSES_FILE
    if cfg.resume and path.exists():
        before = path.read_text().splitlines()
        if before != classes:
            raise TrainError(
                f"the class list changed since {cfg.out} started ({len(before)} classes then, "
                f"{len(classes)} now): resume with the same shards, or start a new run"
            )


def load_backbone(cfg: FinetuneConfig, shards: list[str]) -> Backbone:
    """Random subnets (``--init scratch``) or the subnets of an avts-train checkpoint, with their audio stats."""
    if cfg.init == SCRATCH:
        stats_path = cfg.stats or default_stats_path(shards)
        if stats_path is None or not storage.exists(stats_path):
            raise TrainError("no normalization stats: pass --stats manifests/stats.json (written by avts-ingest)")
        spec = cfg.scratch_spec()
        return Backbone(build_avts(spec), spec, FeatureStats.load(stats_path))
    try:
        content = load_checkpoint(Path(cfg.init))
    except CheckpointError as error:
        raise TrainError(f"--init: {error}") from None
    if checkpoint_tool(content) == FINETUNE_TOOL:
        raise TrainError(
            f"--init {cfg.init} is an avts-finetune checkpoint (a classifier); pass the avts-train "
            "checkpoint of the AVTS model to start from"
        )
    if "model_spec" not in content or "stats" not in content:
        raise TrainError(f"--init {cfg.init} lacks the model_spec and stats of an avts-train checkpoint")
    spec = ModelSpec.from_dict(content["model_spec"])
    conflicts = cfg.architecture_conflicts(spec)
    if conflicts:
        raise TrainError(
            f"--init {cfg.init} holds a model of another architecture than asked for: "
            f"{'; '.join(conflicts)}. Drop those flags (the checkpoint decides), or pass a checkpoint "
            "of that architecture"
        )
    model = build_avts(spec)
    try:
        model.load_state_dict(content["model"])
    except RuntimeError as error:
        raise TrainError(f"--init {cfg.init}: its weights do not fit its own model_spec: {str(error)[:300]}") from None
    return Backbone(model, spec, FeatureStats.from_dict(content["stats"]))


@dataclass
class ClassifyOutput:
    """What one classification step produced (device tensors)."""

    loss: torch.Tensor
    applied: torch.Tensor  # bool scalar: the gradient was finite and the update used it
    bad_rows: torch.Tensor  # (B,) bool: rows whose audio window held a NaN or an infinity
    correct: torch.Tensor  # int scalar: rows whose argmax is the label


def audio_windows(batch: Batch, normalizer: AudioNormalizer) -> torch.Tensor:
    """The clips' aligned 1-s audio windows, Z-normalized, as ``(B, 1, 40, 100)``."""
    feats = batch.feats[:, :WINDOW]  # the loader cuts exactly the clip's window (context = WINDOW)
    return normalizer(feats.float().transpose(1, 2).unsqueeze(1))


def classifier_inputs(
    batch: Batch, spec: ClassifierSpec, settings: InputSettings, train: bool, generator: torch.Generator | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Video clips (augmented when training, centre crop otherwise) and audio windows, as the modality needs."""
    video = make_video(batch, settings, train=train, generator=generator) if spec.uses_video else None
    audio = audio_windows(batch, settings.normalizer) if spec.uses_audio else None
    return video, audio


def classification_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    targets: torch.Tensor,
    spec: ClassifierSpec,
    settings: InputSettings,
    generator: torch.Generator,
) -> ClassifyOutput:
    """Augment, forward, cross-entropy, update (a non-finite gradient is dropped, as in avts-train's step)."""
    video, audio = classifier_inputs(batch, spec, settings, train=True, generator=generator)
    with autocast_for(targets.device):
        logits = model(video, audio)
    loss = F.cross_entropy(logits.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    applied = drop_nonfinite_gradient(model.parameters())
    optimizer.step()
    bad = nonfinite_rows(audio) if audio is not None else torch.zeros_like(targets, dtype=torch.bool)
    return ClassifyOutput(loss, applied, bad, (logits.detach().argmax(dim=1) == targets).sum())


@dataclass
class ClassifyTask:
    """What `avts-finetune` trains: action classification with cross-entropy; tested every ``--eval-every``
    epochs on the test shards (clip and video top-1)."""

    cfg: FinetuneConfig
    model: ActionClassifier
    classes: list[str]
    settings: InputSettings
    stats: FeatureStats
    test_loader: LoaderSpec
    last_test: tuple[int, ClassificationResult] | None = None  # the newest test and the epoch it followed
    shown: tuple[str, ...] = ("test_clip_top1", "test_video_top1")

    @property
    def spec(self) -> ClassifierSpec:
        """The classifier's shape."""
        return self.model.spec

    def targets(self, labels: list[str | None], device: torch.device | str = "cpu") -> torch.Tensor:
        """Class indices of sample labels; an unknown or missing label is an error."""
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted({str(label) for label in labels if label not in index})
        if unknown:
            raise TrainError(
                f"samples with labels that are not among the {len(self.classes)} classes: "
                f"{', '.join(unknown[:10])} ('None': a sample without a label, from a file that was "
                "not in a class folder at ingest)"
            )
        return torch.tensor([index[label] for label in labels if label is not None], dtype=torch.int64, device=device)

    def start_epoch(self, run: Run, epoch: int) -> None:
        """Nothing to prepare."""

    def step(self, run: Run, batch: Batch, epoch: int) -> ClassifyOutput:
        """One cross-entropy step on random clips (multi-scale crop, flip) and their aligned audio."""
        return classification_step(
            run.forward,
            run.optimizer,
            batch,
            self.targets(batch.labels, run.device),
            self.spec,
            self.settings,
            run.generator,
        )

    def culprits(self, out: ClassifyOutput, keys: list[str]) -> list[str]:
        """The samples whose audio held non-finite values."""
        return [keys[row] for row in out.bad_rows.nonzero().flatten().cpu().tolist()]

    def step_record(self, out: ClassifyOutput) -> dict[str, float]:
        """Top-1 on the step's training batch."""
        return {"train_top1": float(out.correct) / out.bad_rows.numel()}

    def evaluate(self, run: Run, epoch: int) -> dict[str, Any]:
        """Test every ``--eval-every`` epochs and after the last one."""
        if (epoch + 1) % self.cfg.eval_every and epoch + 1 < self.cfg.epochs:
            return {}
        result = self.test(run.device)
        self.last_test = (epoch, result)
        return {
            "test_clip_top1": result.clip_top1,
            "test_video_top1": result.video_top1,
            "test_mean_class_accuracy": result.mean_class_accuracy,
        }

    def test(self, device: torch.device) -> ClassificationResult:
        """Score every test clip, average per video (see :mod:`trainer.finetune_eval`)."""

        def logits_of(batch: Batch) -> torch.Tensor:
            on_device = batch.to(device)
            video, audio = classifier_inputs(on_device, self.spec, self.settings, train=False, generator=None)
            with autocast_for(device):
                return self.model(video, audio)

        self.model.eval()
        try:
            scores = predict_clips(logits_of, build_loader(self.test_loader, 0), self.targets)
        finally:
            self.model.train()
        if not scores.keys:
            raise TrainError(f"the test shards gave no clip ({len(self.test_loader.shards)} shards)")
        return score_videos(scores, self.classes)

    def epoch_record(self, epoch: int) -> dict[str, Any]:
        """Modality and where the weights started."""
        return {"modality": self.cfg.modality, "init": self.cfg.init}

    def checkpoint_content(self) -> dict[str, Any]:
        """The classifier's shape, its classes and the audio normalization."""
        return {"classifier_spec": self.spec.to_dict(), "classes": self.classes, "stats": self.stats.to_dict()}

    def plot(self, run_dir: Path) -> None:
        """Loss, test accuracy and LR curves."""
        plot_finetune(run_dir)


def final_test(run: Run) -> ClassificationResult:
    """The test of the final weights (reused from the last epoch when it was tested then); writes
    ``results.json`` and ``confusion.png`` and prints the figures."""
    task = run.task
    assert isinstance(task, ClassifyTask)
    cfg = task.cfg
    if task.last_test is not None and task.last_test[0] == cfg.epochs - 1:
        result = task.last_test[1]
    else:
        result = task.test(run.device)
    about = {
        "modality": cfg.modality,
        "init": cfg.init,
        "epochs": cfg.epochs,
        "global_step": run.state.global_step,
        "clips_per_video": cfg.test_clips,
        "test_shards": len(task.test_loader.shards),
    }
    path = write_results(cfg.out, result, about)
    run.console.print(
        f"test: clip top-1 {result.clip_top1:.4f} ({result.clips} clips), video top-1 "
        f"{result.video_top1:.4f} ({result.videos} videos), mean class accuracy "
        f"{result.mean_class_accuracy:.4f}; {path}"
    )
    return result
