"""AVTS accuracy on held-out videos (§3.2), with the threshold τ chosen on videos other than the scored ones.

The paper classifies a pair as in sync when the embedding distance is below a threshold τ (and, after the
cross-entropy stage, by the sync head). τ has to be chosen on data; choosing it on the pairs being scored gives
the best accuracy any threshold reaches on them, an optimistic figure. Here:

* Every clip of a held-out video is paired with audio by the training pair sampler (:func:`make_pairs`): half
  positives, the rest negatives of the mix, from seeded generators. Two mixes: easy negatives only (the paper's
  Kinetics test set) and 75% easy / 25% hard.
* Videos are split into two halves by a stable hash of their key (:func:`half_of`), and pairs are made within a
  half: the clip, its positive audio and the audio of its easy negatives all come from videos of that half.
* τ is chosen on half A and the accuracy measured on half B, then the other way around; the figure is the mean
  of the two (:func:`cross_half`). `avts-eval` can instead choose τ on other shards (:func:`transfer_threshold`).
* A model with the sync head of §3.2 is also scored by the head's argmax, which needs no threshold.

:func:`score_pairs` is shared by the in-training validation (:func:`evaluate`) and `avts-eval`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from avts.seeds import stable_int
from trainer.data import TENSOR_FIELDS, Batch
from trainer.loss import accuracy_at_threshold, best_threshold, pair_distance
from trainer.models import AVTSModel
from trainer.sampler import EASY, HARD, POSITIVE, SUPER_HARD, NegativeMix
from trainer.step import InputSettings, autocast_for, make_pairs, make_video

EVAL_MIXES = {"easy": NegativeMix(easy=1.0, hard=0.0), "mixed": NegativeMix(easy=0.75, hard=0.25)}
HALVES = 2
HALF_NAMES = ("A", "B")
KIND_NAMES = {POSITIVE: "positive", EASY: "easy", HARD: "hard", SUPER_HARD: "super_hard"}


def half_of(key: str) -> int:
    """The half (0 = A, 1 = B) a video belongs to: a stable hash of its key, the same in every run and tool."""
    return stable_int("avts-eval-half", key) % HALVES


@dataclass
class ScoredPairs:
    """The pairs of one group of videos for one negative mix: distances, labels and the head's probabilities."""

    distance: torch.Tensor  # (N,) float32, embedding distance
    label: torch.Tensor  # (N,) float32, 1 in sync
    kind: torch.Tensor  # (N,) int64, trainer.sampler kinds
    sync_prob: torch.Tensor | None  # (N,) the head's in-sync probability; None without a head

    @property
    def count(self) -> int:
        """Number of pairs."""
        return int(self.label.numel())

    def kinds(self) -> dict[str, int]:
        """How many pairs of each kind (positives, easy, hard negatives)."""
        return {name: int((self.kind == kind).sum()) for kind, name in KIND_NAMES.items() if (self.kind == kind).any()}


@dataclass
class HeldOutScores:
    """What :func:`score_pairs` measured, per group of videos (index = group)."""

    videos: list[set[str]]  # keys of the videos seen in each group
    clips: list[int]  # clips seen in each group
    pairs: dict[str, list[ScoredPairs]]  # mix name -> per group


@dataclass
class ThresholdTransfer:
    """τ chosen on one set of pairs, accuracy measured on another."""

    tau: float
    fit_accuracy: float  # on the pairs τ was chosen on: the best any threshold does there (optimistic)
    accuracy: float  # on the scored pairs: the figure to report
    fit_pairs: int
    scored_pairs: int


@dataclass
class _Collected:
    distance: list[torch.Tensor] = field(default_factory=list)
    label: list[torch.Tensor] = field(default_factory=list)
    kind: list[torch.Tensor] = field(default_factory=list)
    sync_prob: list[torch.Tensor] = field(default_factory=list)

    def finish(self, has_head: bool) -> ScoredPairs:
        def cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
            return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)

        return ScoredPairs(
            cat(self.distance, torch.float32),
            cat(self.label, torch.float32),
            cat(self.kind, torch.int64),
            cat(self.sync_prob, torch.float32) if has_head else None,
        )


def _take_rows(batch: Batch, rows: list[int]) -> Batch:
    """The batch restricted to ``rows``."""
    index = torch.tensor(rows, dtype=torch.int64)
    tensors: dict[str, Any] = {name: getattr(batch, name)[index] for name in TENSOR_FIELDS}
    return replace(
        batch,
        **tensors,
        keys=[batch.keys[row] for row in rows],
        labels=[batch.labels[row] for row in rows] if batch.labels else [],
    )


def _concat(first: Batch, second: Batch) -> Batch:
    """Rows of ``first`` then rows of ``second`` (equal clip and context shapes, as within one data set)."""
    tensors: dict[str, Any] = {name: torch.cat([getattr(first, name), getattr(second, name)]) for name in TENSOR_FIELDS}
    labels = first.labels + second.labels if first.labels and second.labels else []
    return replace(first, **tensors, keys=first.keys + second.keys, labels=labels)


def batches_by_group(batches: Iterable[Batch], group_of: Callable[[str], int]) -> Iterator[tuple[int, Batch]]:
    """Regroup batches so that each holds the clips of one group of videos only.

    A group's rows are gathered until they fill a batch of the incoming size and come from at least two videos
    (easy negatives need another video). Each full batch is held back until the next one of its group is full,
    so that the rows left at the end join the last batch of their group instead of being lost; only a group
    with a single video in all is never released.
    """
    pending: dict[int, Batch] = {}  # rows gathered towards the next batch
    ready: dict[int, Batch] = {}  # a full batch, released when the next one is full or at the end
    size = 0
    for batch in batches:
        size = max(size, len(batch.keys))
        groups = [group_of(key) for key in batch.keys]
        for group in sorted(set(groups)):
            part = _take_rows(batch, [row for row, g in enumerate(groups) if g == group])
            merged = _concat(pending.pop(group), part) if group in pending else part
            if len(merged.keys) < size or len(set(merged.keys)) < 2:
                pending[group] = merged
                continue
            if group in ready:
                yield group, ready.pop(group)
            ready[group] = merged
    for group in sorted(set(pending) | set(ready)):
        parts = [part for part in (ready.get(group), pending.get(group)) if part is not None]
        last = parts[0] if len(parts) == 1 else _concat(parts[0], parts[1])
        if len(set(last.keys)) >= 2:
            yield group, last


@torch.no_grad()
def score_pairs(
    model: AVTSModel,
    batches: Iterable[Batch],
    settings: InputSettings,
    device: torch.device,
    seed: int,
    group_of: Callable[[str], int] = lambda key: 0,
    groups: int = 1,
) -> HeldOutScores:
    """Pair every clip with audio once per mix of :data:`EVAL_MIXES`, within its group, and score the pairs.

    Clips are centre-cropped (no augmentation); the pairs of group ``g`` and mix ``m`` are drawn from a generator
    seeded by ``(seed, m, g)``, so the same batches give the same pairs.
    """
    model.eval()
    generators = {
        (mix, group): torch.Generator(device).manual_seed(stable_int("avts-eval-pairs", seed, mix, group))
        for mix in EVAL_MIXES
        for group in range(groups)
    }
    collected = {key: _Collected() for key in generators}
    videos: list[set[str]] = [set() for _ in range(groups)]
    clips = [0] * groups

    def counted(source: Iterable[Batch]) -> Iterator[Batch]:
        for batch in source:
            for key in batch.keys:
                videos[group_of(key)].add(key)
                clips[group_of(key)] += 1
            yield batch

    for group, batch in batches_by_group(counted(batches), group_of):
        on_device = batch.to(device)
        with autocast_for(device):
            video_emb = model.embed_video(make_video(on_device, settings, train=False, generator=None)).float()
            for mix, negatives in EVAL_MIXES.items():
                pairs, audio = make_pairs(on_device, settings, negatives, generators[(mix, group)])
                audio_emb = model.embed_audio(audio).float()
                into = collected[(mix, group)]
                into.distance.append(pair_distance(video_emb, audio_emb).cpu())
                into.label.append(pairs.label.cpu())
                into.kind.append(pairs.kind.cpu())
                if model.head is not None:
                    into.sync_prob.append(model.head(video_emb, audio_emb).float().softmax(dim=1)[:, 1].cpu())
    pairs_by_mix = {
        mix: [collected[(mix, group)].finish(model.head is not None) for group in range(groups)] for mix in EVAL_MIXES
    }
    return HeldOutScores(videos, clips, pairs_by_mix)


def transfer_threshold(fit: ScoredPairs, scored: ScoredPairs) -> ThresholdTransfer:
    """Choose τ on ``fit`` (the best cut of its distances) and measure the rule's accuracy on ``scored``."""
    tau, fit_accuracy = best_threshold(fit.distance, fit.label)
    return ThresholdTransfer(
        tau, fit_accuracy, accuracy_at_threshold(scored.distance, scored.label, tau), fit.count, scored.count
    )


def cross_half(halves: list[ScoredPairs]) -> list[ThresholdTransfer] | None:
    """τ from half A scored on half B, and τ from B scored on A; None when a half has no pairs."""
    first, second = halves
    if first.count == 0 or second.count == 0:
        return None
    return [transfer_threshold(first, second), transfer_threshold(second, first)]


def head_accuracy(pairs: list[ScoredPairs]) -> float | None:
    """Accuracy of the sync head's argmax over these pairs (None without a head or pairs)."""
    usable = [p for p in pairs if p.sync_prob is not None and p.count]
    if not usable:
        return None
    right = sum(int(((p.sync_prob > 0.5) == (p.label > 0.5)).sum()) for p in usable if p.sync_prob is not None)
    return right / sum(p.count for p in usable)


def evaluate(
    model: AVTSModel, batches: Iterable[Batch], settings: InputSettings, device: torch.device, seed: int = 1234
) -> dict[str, float | None]:
    """The in-training validation figures, per mix (``easy``, ``mixed``):

    ``val_acc_<mix>``: mean over the two directions of :func:`cross_half` (τ chosen on one half of the videos,
    accuracy on the other), None when a half has no pairs; ``val_tau_<mix>_a`` / ``_b``: the τ chosen on each
    half; ``val_pairs_<mix>``: pairs scored; with a sync head, ``val_acc_<mix>_head``: the head's accuracy.
    """
    scores = score_pairs(model, batches, settings, device, seed, half_of, HALVES)
    results: dict[str, float | None] = {}
    for mix, halves in scores.pairs.items():
        transfers = cross_half(halves)
        results[f"val_acc_{mix}"] = None if transfers is None else sum(t.accuracy for t in transfers) / len(transfers)
        results[f"val_tau_{mix}_a"] = None if transfers is None else transfers[0].tau
        results[f"val_tau_{mix}_b"] = None if transfers is None else transfers[1].tau
        results[f"val_pairs_{mix}"] = float(sum(half.count for half in halves))
        if model.head is not None:
            results[f"val_acc_{mix}_head"] = head_accuracy(halves)
    return results
