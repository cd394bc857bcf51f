"""One training step on a device batch: GPU augmentation, GPU pair sampling, forward, loss, update.

Shared by `avts-train`, the evaluation (which uses its input half) and ``benchmarks/train_bench.py`` (which
times exactly the step that trains). A step whose gradient is not finite (a NaN in the data, a diverging
run) must not reach the weights: its gradient is zeroed on the device, without waiting for the GPU (the
optimizer still applies momentum and weight decay, which are finite), and the step is reported as bad
(see :class:`StepOutput`); the training loop names the samples and decides when to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.augment import AudioNormalizer, video_input
from trainer.data import Batch
from trainer.loss import contrastive_loss
from trainer.sampler import NegativeMix, PairBatch, PairSampler


@dataclass(frozen=True)
class InputSettings:
    """How clips are cropped and audio is normalized."""

    crop_size: int
    crop_scales: tuple[float, ...]
    normalizer: AudioNormalizer
    sampler: PairSampler


def autocast_for(device: torch.device) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA; nothing on the CPU (bf16 convolutions there are slow)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def make_video(batch: Batch, settings: InputSettings, train: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Normalized ``(B, 3, T, crop, crop)`` clips, channels-last on CUDA."""
    clips = video_input(batch.y, batch.u, batch.v, settings.crop_size, settings.crop_scales, train, generator)
    if clips.device.type == "cuda":
        clips = clips.contiguous(memory_format=torch.channels_last_3d)
    return clips


def make_pairs(
    batch: Batch, settings: InputSettings, mix: NegativeMix, generator: torch.Generator | None
) -> tuple[PairBatch, torch.Tensor]:
    """Sample positives/negatives on the device; returns the pairs and the normalized audio windows."""
    pairs = settings.sampler.sample(batch.feats, batch.valid, batch.clip_start, mix, generator, video_id=batch.video_id)
    return pairs, settings.normalizer(pairs.audio)


@dataclass
class StepOutput:
    """What one training step produced (tensors stay on the device: no host sync)."""

    loss: torch.Tensor
    video_emb: torch.Tensor
    audio_emb: torch.Tensor
    pairs: PairBatch
    applied: torch.Tensor  # bool scalar: the gradient was finite and the update used it
    bad_audio_rows: torch.Tensor  # (B,) bool: pairs whose audio window held a NaN or an infinity


def nonfinite_rows(audio: torch.Tensor) -> torch.Tensor:
    """``(B,)`` True where a pair's audio window holds a NaN or an infinity (clips come from uint8 pixels)."""
    return ~torch.isfinite(audio).flatten(1).all(dim=1)


def drop_nonfinite_gradient(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """Zero every gradient when any of them is not finite; returns whether they were (a device bool).

    Decided on the gradients, which DDP has already averaged, so every rank takes the same decision.
    """
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    finite = torch.isfinite(torch.nn.utils.get_total_norm(grads))
    for grad in grads:
        grad.masked_fill_(~finite, 0.0)
    return finite


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    settings: InputSettings,
    mix: NegativeMix,
    generator: torch.Generator | None,
    margin: float,
    mark: Callable[[], None] | None = None,
) -> StepOutput:
    """One optimization step on a device batch: augment, sample pairs, forward, loss, update.

    The loss is Eq. 1 (contrastive, ``margin``) or, when the model has a sync head, cross-entropy (§3.2).
    ``mark`` is called after each of the three stages (benchmarks use it to time them).
    """
    mark = mark or (lambda: None)
    video = make_video(batch, settings, train=True, generator=generator)
    mark()
    pairs, audio = make_pairs(batch, settings, mix, generator)
    mark()
    with autocast_for(video.device):
        video_emb, audio_emb, logits = model(video, audio)
    if logits is None:
        loss = contrastive_loss(video_emb.float(), audio_emb.float(), pairs.label, margin)
    else:
        loss = F.cross_entropy(logits.float(), pairs.label.long())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    applied = drop_nonfinite_gradient(model.parameters())
    optimizer.step()
    mark()
    return StepOutput(loss, video_emb, audio_emb, pairs, applied, nonfinite_rows(audio))
