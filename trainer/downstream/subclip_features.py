"""conv5 features of the audio subnet on 2-s sub-clips (§3.4): `--features avts` and `--features random`.

**Pooling.** conv5 (after pool5) of one 2-s window (40 filters × 200 frames) is 256 × 20 × 50 = 256,000
values: with 10 sub-clips per file, the 1,600 training clips of an ESC-50 fold would make 16,000 rows of
256,000 (16 GB in float32), far beyond a linear SVM. The map is max-pooled (adaptive) to
``(bands, time_bins)`` = (4, 1) by default: **1,024 dims per sub-clip** (256 channels × 4 frequency bands).
Frequency position carries class information (a siren and a rumble differ by band), time position inside an
arbitrarily placed sub-clip does not, so the frequency axis keeps 4 bands of 5 pooled rows (~10 mel filters
each) and time is pooled whole. Max rather than mean: activations are post-ReLU and sparse, and the
network's own pools are max.

**Random subnet.** :func:`random_audio_net` is AudioNet with PyTorch's default initialization under a seed,
in eval mode: its BatchNorm layers hold their initial running statistics (mean 0, variance 1) and are the
identity (up to BatchNorm's eps). It is a floor for the probe, not the paper's "our audio subnet" row (a
subnet trained on the benchmark).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainer.augment import AudioNormalizer
from trainer.checkpoint import load_trained
from trainer.models.audio import AudioNet

DEFAULT_POOL = (4, 1)
CONV5_MAP = (20, 50)  # conv5 bands × time bins of a 2-s sub-clip (40 filters × 200 frames)
DEFAULT_POOL_TEXT = f"{DEFAULT_POOL[0]}x{DEFAULT_POOL[1]}"


def parse_pool(text: str) -> tuple[int, int]:
    """``BANDSxTIME`` (e.g. ``4x1``) → ``(bands, time_bins)`` of the conv5 max pool; ``ValueError`` otherwise."""
    try:
        bands, time_bins = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--pool: expected BANDSxTIME such as 4x1, got {text!r}") from None
    if not (1 <= bands <= CONV5_MAP[0] and 1 <= time_bins <= CONV5_MAP[1]):
        raise ValueError(
            f"--pool: BANDS must be in [1, {CONV5_MAP[0]}] and TIME in [1, {CONV5_MAP[1]}] (the conv5 map), "
            f"got {text!r}"
        )
    return bands, time_bins


class AudioConv5Extractor:
    """Sub-clip filterbank windows → Z-normalized → ``AudioNet.conv5_features`` → max-pooled, flattened."""

    def __init__(
        self,
        audio_net: AudioNet,
        mean: Sequence[float],
        std: Sequence[float],
        pool: tuple[int, int] = DEFAULT_POOL,
        device: torch.device | None = None,
        batch_size: int = 32,
    ) -> None:
        self.device = device or torch.device("cpu")
        self.net = audio_net.to(self.device).eval()
        self.normalize = AudioNormalizer(mean, std, self.device)
        self.pool = nn.AdaptiveMaxPool2d(pool)
        self.batch_size = batch_size
        self.feature_dim = audio_net.conv5_shape[0] * pool[0] * pool[1]

    @torch.no_grad()
    def __call__(self, windows: np.ndarray, advance: Callable[[int], None] | None = None) -> np.ndarray:
        """Features ``(N, feature_dim)`` float32 of filterbank windows ``(N, frames, 40)`` (as in the shards);
        ``advance(n)`` is called after each batch of ``n`` windows."""
        out = np.empty((len(windows), self.feature_dim), dtype=np.float32)
        for start in range(0, len(windows), self.batch_size):
            batch = torch.from_numpy(np.asarray(windows[start : start + self.batch_size], dtype=np.float32))
            audio = self.normalize(batch.to(self.device).transpose(1, 2).unsqueeze(1))  # (B, 1, 40, frames)
            pooled = self.pool(self.net.conv5_features(audio))
            out[start : start + len(batch)] = torch.flatten(pooled, 1).float().cpu().numpy()
            if advance is not None:
                advance(len(batch))
        return out


def random_audio_net(seed: int, width: int = 64) -> AudioNet:
    """A randomly initialized AudioNet (same weights for the same seed and width), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AudioNet(width=width).eval()


def window_stats(windows: np.ndarray, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-filter mean and standard deviation over every frame of filterbank windows ``(N, frames, 40)``."""
    total = np.zeros(windows.shape[-1])
    squares = np.zeros(windows.shape[-1])
    for start in range(0, len(windows), chunk):
        part = windows[start : start + chunk].astype(np.float64).reshape(-1, windows.shape[-1])
        total += part.sum(axis=0)
        squares += np.square(part).sum(axis=0)
    count = windows.shape[0] * windows.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    return mean.tolist(), std.tolist()


def load_audio_subnet(checkpoint: Path) -> tuple[AudioNet, list[float], list[float]]:
    """The trained AudioNet of an `avts-train` checkpoint and the per-filter mean and std it was trained with."""
    trained = load_trained(checkpoint)
    return trained.model.audio, trained.stats.mean, trained.stats.std
