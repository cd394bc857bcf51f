"""GPU input processing on real decoded frames: YUV→RGB against swscale, crops, flips, normalization."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from tests.conftest import make_av_clip
from trainer.augment import VIDEO_MEAN, VIDEO_STD, AudioNormalizer, crop_grids, video_input, yuv_to_rgb
from trainer.clip_decode import split_planes


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[av.VideoFrame]:
    """25 frames of a colourful moving test pattern, as yuv420p at 128×128 (the loader's square crop size)."""
    clip = make_av_clip(tmp_path_factory.mktemp("augment") / "pattern.mp4", 1.5)
    with av.open(str(clip)) as container:
        decoded = []
        for frame in container.decode(video=0):
            decoded.append(frame.reformat(width=128, height=128, format="yuv420p"))
            if len(decoded) == 25:
                return decoded
    raise AssertionError("clip too short")


def planes(frames: list[av.VideoFrame]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch of one: (1, T, 128, 128) Y and (1, T, 64, 64) U, V as uint8 tensors."""
    y, u, v = split_planes(np.stack([f.to_ndarray() for f in frames]))
    return tuple(torch.from_numpy(np.ascontiguousarray(p))[None] for p in (y, u, v))


def test_yuv_to_rgb_matches_swscale(frames: list[av.VideoFrame]) -> None:
    y, u, v = planes(frames)
    up = lambda plane: plane.float().repeat_interleave(2, -2).repeat_interleave(2, -1)  # noqa: E731
    ours = yuv_to_rgb(y.float(), up(u), up(v))[0].permute(1, 2, 3, 0).numpy() * 255
    reference = np.stack([f.to_ndarray(format="rgb24") for f in frames]).astype(np.float32)
    difference = np.abs(ours - reference)
    assert difference.mean() < 2.0 and np.percentile(difference, 99) < 6.0


def test_evaluation_crop_is_the_centre_and_normalized(frames: list[av.VideoFrame]) -> None:
    y, u, v = planes(frames)
    clip = video_input(y, u, v, out_size=64, scales=(1.0,), train=False)
    assert clip.shape == (1, 3, 25, 64, 64)
    rgb = clip * torch.tensor(VIDEO_STD).view(1, 3, 1, 1, 1) + torch.tensor(VIDEO_MEAN).view(1, 3, 1, 1, 1)
    centre = yuv_to_rgb(
        y[:, :, 32:96, 32:96].float(),
        u[:, :, 16:48, 16:48].float().repeat_interleave(2, -2).repeat_interleave(2, -1),
        v[:, :, 16:48, 16:48].float().repeat_interleave(2, -2).repeat_interleave(2, -1),
    )
    assert (rgb - centre).abs().mean() < 0.02  # the same pixels (chroma interpolated instead of repeated)


def test_training_crops_vary_in_scale_and_place_and_flip_half_the_time() -> None:
    generator = torch.Generator().manual_seed(0)
    grids = crop_grids(2000, 8, (1.0, 0.875, 0.75, 0.66), True, torch.device("cpu"), generator)
    widths = (grids[:, 0, -1, 0] - grids[:, 0, 0, 0]).abs()
    assert len(torch.unique((widths * 100).round())) == 4  # the four scales
    mirrored = (grids[:, 0, -1, 0] < grids[:, 0, 0, 0]).float().mean()
    assert 0.45 < mirrored < 0.55
    assert grids.abs().max() <= 1.0 + 1e-6  # crops stay inside the frame


def test_audio_normalizer_z_normalizes_per_filter() -> None:
    mean, std = np.linspace(-3, 3, 40), np.linspace(0.5, 2.0, 40)
    audio = torch.from_numpy(np.random.default_rng(0).normal(mean[:, None], std[:, None], (64, 1, 40, 100))).float()
    out = AudioNormalizer(mean.tolist(), std.tolist(), torch.device("cpu"))(audio)
    assert out.mean(dim=(0, 1, 3)).abs().max() < 0.05
    assert (out.std(dim=(0, 1, 3)) - 1).abs().max() < 0.05
