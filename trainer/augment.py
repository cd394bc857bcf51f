"""GPU-side input processing: YUV → RGB, multi-scale random crop + flip, Z-normalization of frames and audio.

The crop, resize and flip of a whole batch are one ``grid_sample`` per plane: each clip gets an affine
grid (scale, offset, mirror) and the Y plane and the half-resolution U/V planes are sampled with the same
normalized grid, so chroma is upsampled for free and colour conversion runs only on the output pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Kinetics frame statistics used by torchvision's video models, for Z-normalization.
VIDEO_MEAN = (0.43216, 0.394666, 0.37645)
VIDEO_STD = (0.22803, 0.22145, 0.216989)


def crop_grids(
    batch: int,
    out_size: int,
    scales: Sequence[float],
    train: bool,
    device: torch.device,
    generator: torch.Generator | None = None,
    eval_scale: float = 1.0,
) -> torch.Tensor:
    """Sampling grids ``(B, out, out, 2)``: a square crop of side ``scale × input side`` at a random place,
    mirrored half of the time (training), or the centre crop of side ``eval_scale`` (evaluation)."""
    if train:
        choice = torch.randint(len(scales), (batch,), device=device, generator=generator)
        side = torch.tensor(list(scales), device=device, dtype=torch.float32)[choice]
        centre = (torch.rand(batch, 2, device=device, generator=generator) * 2 - 1) * (1 - side)[:, None]
        mirror = torch.where(torch.rand(batch, device=device, generator=generator) < 0.5, -1.0, 1.0)
    else:
        side = torch.full((batch,), eval_scale, device=device)
        centre = torch.zeros(batch, 2, device=device)
        mirror = torch.ones(batch, device=device)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = side * mirror
    theta[:, 1, 1] = side
    theta[:, :, 2] = centre
    return F.affine_grid(theta, [batch, 1, out_size, out_size], align_corners=False)


def yuv_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """BT.601 limited-range YUV (floats in 0..255) → RGB in [0, 1], stacked on a new dim 1."""
    y = (y - 16.0) * (255.0 / 219.0)
    u = (u - 128.0) * (255.0 / 224.0)
    v = (v - 128.0) * (255.0 / 224.0)
    red = y + 1.402 * v
    green = y - 0.344136 * u - 0.714136 * v
    blue = y + 1.772 * u
    return (torch.stack([red, green, blue], dim=1) / 255.0).clamp_(0.0, 1.0)


def video_input(
    y: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    out_size: int,
    scales: Sequence[float],
    train: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 planes ``(B, T, S, S)`` and ``(B, T, S/2, S/2)`` on the GPU → normalized ``(B, 3, T, out, out)``."""
    batch, frames = y.shape[:2]
    grid = crop_grids(batch, out_size, scales, train, y.device, generator, eval_scale=out_size / y.shape[-1])
    luma = F.grid_sample(y.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    chroma = F.grid_sample(
        torch.cat([u, v], dim=1).float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    rgb = yuv_to_rgb(luma, chroma[:, :frames], chroma[:, frames:])  # (B, 3, T, out, out)
    mean = torch.tensor(VIDEO_MEAN, device=y.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(VIDEO_STD, device=y.device).view(1, 3, 1, 1, 1)
    return (rgb - mean) / std


class AudioNormalizer:
    """Z-normalizes ``(B, 1, 40, window)`` filterbank windows with the per-filter stats of `avts-ingest`."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 1, -1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).clamp_min(1e-5).view(1, 1, -1, 1)

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """Normalize a batch of audio windows."""
        return (audio - self.mean) / self.std
