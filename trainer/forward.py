"""One forward pass of the two-stream net on a batch: GPU augmentation, GPU pair sampling, embeddings."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from trainer.augment import AudioNormalizer, video_input
from trainer.data import Batch
from trainer.sampler import NegativeMix, PairBatch, PairSampler


@dataclass(frozen=True)
class InputSettings:
    """How clips are cropped and audio is normalized."""

    crop_size: int
    crop_scales: tuple[float, ...]
    normalizer: AudioNormalizer
    sampler: PairSampler


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU (bf16 convolutions there are slow)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def make_video(batch: Batch, settings: InputSettings, train: bool,
               generator: torch.Generator | None) -> torch.Tensor:
    """Normalized ``(B, 3, T, crop, crop)`` clips, channels-last on CUDA."""
    clips = video_input(batch.y, batch.u, batch.v, settings.crop_size, settings.crop_scales, train, generator)
    if clips.device.type == "cuda":
        clips = clips.contiguous(memory_format=torch.channels_last_3d)
    return clips


def make_pairs(batch: Batch, settings: InputSettings, mix: NegativeMix,
               generator: torch.Generator | None) -> tuple[PairBatch, torch.Tensor]:
    """Sample positives/negatives on the device; returns the pairs and the normalized audio windows."""
    pairs = settings.sampler.sample(batch.feats, batch.valid, batch.clip_start, mix, generator,
                                    video_id=batch.video_id)
    return pairs, settings.normalizer(pairs.audio)


def embed(model: nn.Module, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio embeddings in float32 (computed under bf16 autocast on CUDA)."""
    with autocast_for(video.device):
        video_emb, audio_emb = model(video, audio)
    return video_emb.float(), audio_emb.float()
