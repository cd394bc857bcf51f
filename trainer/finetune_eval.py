"""Testing a fine-tuned classifier: clip scores → video scores by averaging, top-1, per-class accuracy, plots.

Every test video gives ``--test-clips`` evenly spaced 1-s clips (with their aligned 1-s audio windows). A clip's
scores are its softmax probabilities; a video's scores are the mean over its clips, and its prediction is
their argmax (the paper averages sub-clip scores the same way in §3.4). Clip-level top-1 counts every clip on
its own; video-level top-1 counts videos; per-class accuracy is video-level.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from avts.atomic import atomic_path, atomic_write_text
from trainer.data import Batch
from trainer.metrics import MetricsLog, latest_by

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the headless backend


@dataclass
class ClipScores:
    """Class probabilities of test clips, with the video and the true class of each."""

    probabilities: torch.Tensor  # (N, C) float32
    keys: list[str]  # (N,) the clip's video
    targets: torch.Tensor  # (N,) int64 class index


@dataclass
class ClassificationResult:
    """What a test pass measured."""

    classes: list[str]
    clips: int
    videos: int
    clip_top1: float
    video_top1: float
    per_class: dict[str, float | None]  # video-level accuracy per class; None for a class without test videos
    videos_per_class: dict[str, int]
    confusion: np.ndarray  # (C, C) video counts: rows true class, columns predicted class

    @property
    def mean_class_accuracy(self) -> float:
        """Mean of the per-class accuracies over the classes that have test videos."""
        values = [value for value in self.per_class.values() if value is not None]
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the confusion matrix as nested lists)."""
        return {
            "clips": self.clips,
            "videos": self.videos,
            "clip_top1": self.clip_top1,
            "video_top1": self.video_top1,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class": self.per_class,
            "videos_per_class": self.videos_per_class,
            "classes": self.classes,
            "confusion": self.confusion.tolist(),
        }


def score_videos(scores: ClipScores, classes: list[str]) -> ClassificationResult:
    """Clip- and video-level top-1 and per-class accuracy; a video's scores are the mean of its clips'."""
    if not scores.keys:
        raise ValueError("no test clip was scored")
    clip_correct = scores.probabilities.argmax(dim=1) == scores.targets
    videos = sorted(set(scores.keys))
    row_of = {key: row for row, key in enumerate(videos)}
    rows = torch.tensor([row_of[key] for key in scores.keys])
    summed = torch.zeros(len(videos), len(classes), dtype=torch.float64).index_add_(
        0, rows, scores.probabilities.double()
    )
    counts = torch.bincount(rows, minlength=len(videos)).double()
    mean = summed / counts[:, None]
    truth = torch.full((len(videos),), -1, dtype=torch.int64).scatter_(0, rows, scores.targets)
    disagree = (scores.targets != truth[rows]).nonzero()
    if len(disagree):
        raise ValueError(f"the clips of video {scores.keys[int(disagree[0])]} carry different labels")
    predicted = mean.argmax(dim=1)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (truth.numpy(), predicted.numpy()), 1)
    per_class_videos = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / per_class_videos[i]) if per_class_videos[i] else None)
        for i, name in enumerate(classes)
    }
    return ClassificationResult(
        classes,
        len(scores.keys),
        len(videos),
        float(clip_correct.double().mean()),
        float((predicted == truth).double().mean()),
        per_class,
        {name: int(per_class_videos[i]) for i, name in enumerate(classes)},
        confusion,
    )


@torch.no_grad()
def predict_clips(
    logits_of: Callable[[Batch], torch.Tensor],
    batches: Iterable[Batch],
    targets_of: Callable[[list[str | None]], torch.Tensor],
) -> ClipScores:
    """Softmax probabilities of every clip of ``batches`` (``logits_of`` runs the model on a batch)."""
    probabilities, keys, targets = [], [], []
    for batch in batches:
        targets.append(targets_of(batch.labels))  # unknown labels fail here, before any compute
        probabilities.append(logits_of(batch).float().softmax(dim=1).cpu())
        keys.extend(batch.keys)
    if not keys:
        return ClipScores(torch.zeros(0, 0), [], torch.zeros(0, dtype=torch.int64))
    return ClipScores(torch.cat(probabilities), keys, torch.cat(targets))


def write_results(run_dir: Path, result: ClassificationResult, about: dict[str, Any]) -> Path:
    """``results.json`` (the test figures and what produced them) and ``confusion.png``; returns the JSON path."""
    path = run_dir / "results.json"
    atomic_write_text(path, json.dumps({**about, **result.to_dict()}, indent=2))
    plot_confusion(result, run_dir / "confusion.png")
    return path


def plot_confusion(result: ClassificationResult, path: Path) -> None:
    """The video-level confusion matrix, each row normalized by its class's test videos."""
    count = len(result.classes)
    rows = result.confusion.sum(axis=1, keepdims=True)
    normalized = np.divide(result.confusion, rows, out=np.zeros(result.confusion.shape), where=rows > 0)
    side = min(4 + 0.18 * count, 24)
    figure, axis = plt.subplots(figsize=(side, side))
    image = axis.imshow(normalized, vmin=0, vmax=1, cmap="Blues")
    font = max(3.0, min(9.0, 400 / count))
    axis.set_xticks(range(count), result.classes, rotation=90, fontsize=font)
    axis.set_yticks(range(count), result.classes, fontsize=font)
    axis.set(
        xlabel="predicted class",
        ylabel="true class",
        title=f"video-level confusion: top-1 {result.video_top1:.1%} ({result.videos} videos)",
    )
    figure.colorbar(image, ax=axis, fraction=0.046)
    _save(figure, path)


def plot_finetune(run_dir: Path) -> None:
    """Rewrite ``loss.png`` (cross-entropy), ``accuracy.png`` (test clip and video top-1) and ``lr.png``."""
    records = MetricsLog(run_dir).read()
    steps = latest_by([r for r in records if r["kind"] == "step"], "step")
    epochs = latest_by([r for r in records if r["kind"] == "epoch"], "epoch")
    figure, axis = plt.subplots(figsize=(7, 4))
    if steps:
        axis.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, alpha=0.6, label="train (steps)")
    if epochs:
        axis.plot([r["step"] for r in epochs], [r["train_loss"] for r in epochs], "o-", label="train (epoch mean)")
    axis.set(xlabel="step", ylabel="cross-entropy", title="fine-tuning loss")
    axis.legend()
    _save(figure, run_dir / "loss.png")
    figure, axis = plt.subplots(figsize=(7, 4))
    for key, label in (("test_clip_top1", "test: clip top-1"), ("test_video_top1", "test: video top-1")):
        points = [(r["epoch"] + 1, r[key]) for r in epochs if r.get(key) is not None]
        if points:
            axis.plot(*zip(*points, strict=True), "o-", label=label)
    axis.set(xlabel="epoch", ylabel="accuracy", ylim=(0.0, 1.0), title="test accuracy")
    if axis.get_legend_handles_labels()[0]:  # nothing yet before the first test
        axis.legend()
    _save(figure, run_dir / "accuracy.png")
    figure, axis = plt.subplots(figsize=(7, 3))
    if epochs:
        axis.plot([r["epoch"] + 1 for r in epochs], [r["lr"] for r in epochs], "o-")
        axis.set_yscale("log")
    axis.set(xlabel="epoch", ylabel="learning rate", title="learning rate (×0.1 on plateau)")
    _save(figure, run_dir / "lr.png")


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
