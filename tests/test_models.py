"""Tests for the AVTS networks: MCx video subnet, VGG audio subnet, two-stream model."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from trainer.models import AudioNet, AVTSModel, ModelSpec, SyncHead, VideoNet, build_avts, video_net

MCS = (2, 3, 4, 5)


def _group_shapes(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shapes (without batch) of the named child modules for input ``x``."""
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            shapes[name] = tuple(out.shape[1:])

        return hook

    hooks = [getattr(model, name).register_forward_hook(recorder(name)) for name in names]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return shapes


def _convs(module: nn.Module) -> list[nn.Conv3d]:
    """All Conv3d layers of ``module`` in definition order."""
    return [m for m in module.modules() if isinstance(m, nn.Conv3d)]


@pytest.mark.parametrize("mc", MCS)
@pytest.mark.parametrize("thw", [(8, 32, 32), (25, 64, 64), (1, 16, 16), (3, 17, 23)])
def test_video_output_shapes(mc: int, thw: tuple[int, int, int]) -> None:
    model = video_net(f"mc{mc}", width=8, embed_dim=16).eval()
    x = torch.randn(2, 3, *thw)
    with torch.no_grad():
        features = model.forward_features(x)
        emb = model(x)
    assert model.feature_dim == 64
    assert features.shape == (2, 64)
    assert emb.shape == (2, 16)
    assert torch.isfinite(emb).all()


@pytest.mark.parametrize("mc", MCS)
def test_video_layer_table(mc: int) -> None:
    """Per-group outputs match the docstring table (channels scaled to width 8)."""
    model = VideoNet(mc=mc, width=8).eval()
    shapes = _group_shapes(model, ["conv1", "conv2", "conv3", "conv4", "conv5"], torch.randn(1, 3, 25, 112, 112))
    assert shapes == {
        "conv1": (8, 25, 56, 56),
        "conv2": (8, 25, 56, 56),
        "conv3": (16, 25, 28, 28),
        "conv4": (32, 25, 14, 14),
        "conv5": (64, 25, 7, 7),
    }


@pytest.mark.parametrize("mc", MCS)
def test_video_kernels_3d_then_2d(mc: int) -> None:
    model = VideoNet(mc=mc, width=8)
    stem = _convs(model.conv1)
    assert [c.kernel_size for c in stem] == [(3, 7, 7)]
    for group in range(2, 6):
        convs = _convs(getattr(model, f"conv{group}"))
        assert len(convs) == 4, "two blocks of two convs per group"
        expected_t = 3 if group < mc else 1
        for conv in convs:
            assert conv.kernel_size == (expected_t, 3, 3)
            assert conv.padding == ((expected_t - 1) // 2, 1, 1)
            assert conv.stride[0] == 1, "no temporal downsampling"
        strides = [c.stride for c in convs]
        first = (1, 1, 1) if group == 2 else (1, 2, 2)
        assert strides == [first, (1, 1, 1), (1, 1, 1), (1, 1, 1)]


def test_video_has_no_residual_path() -> None:
    """Zeroing one conv in the middle cuts every path from input to output."""
    torch.manual_seed(0)
    model = video_net("mc3", width=8).eval()
    x1, x2 = torch.randn(2, 1, 3, 8, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x1), model(x2), atol=1e-6)
        _convs(model.conv3)[1].weight.zero_()  # second conv of the first conv3 block
        assert torch.allclose(model(x1), model(x2), atol=1e-6)


def test_mc3_parameter_count_close_to_torchvision_mc3_18() -> None:
    """torchvision mc3_18 has ~11.7M parameters (400-way fc, 1x1x1 shortcut convs); ours drops both."""
    w, embed = 64, 128
    model = video_net("mc3", width=w, embed_dim=embed)
    n_params = sum(p.numel() for p in model.parameters())

    def group(c_in: int, c_out: int, k: int) -> int:
        return c_in * c_out * k + 3 * c_out * c_out * k + 4 * 2 * c_out  # 4 convs + 4 BNs

    expected = (
        3 * w * 3 * 7 * 7
        + 2 * w  # stem + BN
        + group(w, w, 27)
        + group(w, 2 * w, 9)
        + group(2 * w, 4 * w, 9)
        + group(4 * w, 8 * w, 9)
        + 8 * w * embed
        + embed  # fc
    )
    assert n_params == expected
    assert 10.5e6 < n_params < 12.5e6
    assert video_net("mc2", width=w).feature_dim == 512


@pytest.mark.parametrize("mc", (3, 5))
def test_video_channels_last_matches_contiguous(mc: int) -> None:
    torch.manual_seed(0)
    model = video_net(f"mc{mc}", width=8).eval()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 3, 8, 32, 32)
    x_cl = x.to(memory_format=torch.channels_last_3d)
    assert x_cl.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        ref = model(x)
        out = model_cl(x_cl)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_video_net_rejects_unknown_arch() -> None:
    with pytest.raises(ValueError, match="mc6"):
        video_net("mc6")
    with pytest.raises(ValueError):
        VideoNet(mc=1)


def test_audio_default_shapes() -> None:
    model = AudioNet().eval()
    x = torch.randn(2, 1, 40, 100)
    shapes = _group_shapes(model, ["conv1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7"], x)
    assert shapes == {
        "conv1": (64, 40, 100),
        "conv2": (192, 40, 100),
        "pool2": (192, 40, 50),
        "conv3": (384, 40, 50),
        "conv4": (256, 40, 50),
        "conv5": (256, 40, 50),
        "pool5": (256, 20, 25),
        "fc6": (512,),
        "fc7": (128,),
    }
    assert model.conv5_shape == (256, 20, 25)
    assert model.feature_dim == 256 * 20 * 25


@pytest.mark.parametrize(
    ("n_filters", "n_frames", "f_out", "t_out"), [(40, 100, 20, 25), (13, 20, 7, 5), (40, 201, 20, 51)]
)
def test_audio_small_width_shapes(n_filters: int, n_frames: int, f_out: int, t_out: int) -> None:
    model = AudioNet(width=8, embed_dim=16, n_filters=n_filters, n_frames=n_frames).eval()
    x = torch.randn(3, 1, n_filters, n_frames)
    with torch.no_grad():
        conv5 = model.conv5_features(x)
        emb = model(x)
    assert conv5.shape == (3, 32, f_out, t_out)
    assert model.conv5_shape == (32, f_out, t_out)
    assert model.feature_dim == 32 * f_out * t_out
    assert emb.shape == (3, 16)


def test_avts_forward_and_sync_head() -> None:
    model = build_avts(ModelSpec(arch="mc2", width=4, audio_width=4, embed_dim=16, sync_head=True)).eval()
    with torch.no_grad():
        v_emb, a_emb, logits = model(torch.randn(2, 3, 4, 16, 16), torch.randn(2, 1, 40, 100))
    assert v_emb.shape == a_emb.shape == (2, 16)
    assert torch.allclose(v_emb.norm(dim=1), torch.ones(2)) and torch.allclose(a_emb.norm(dim=1), torch.ones(2))
    assert logits is not None and logits.shape == (2, 2)
    assert isinstance(model.head, SyncHead)
    assert model.video.mc == 2


def test_model_without_head_or_normalization_returns_raw_embeddings() -> None:
    model = build_avts(ModelSpec(arch="mc2", width=4, audio_width=4, embed_dim=16, embedding_norm="none")).eval()
    with torch.no_grad():
        v_emb, _, logits = model(torch.randn(2, 3, 4, 16, 16), torch.randn(2, 1, 40, 100))
        raw = model.video(torch.randn(2, 3, 4, 16, 16))
    assert logits is None
    assert not torch.allclose(raw.norm(dim=1), torch.ones(2))
    assert v_emb.shape == (2, 16)


def test_model_spec_round_trips_through_a_dict() -> None:
    spec = ModelSpec(arch="mc4", width=8, audio_width=16, embed_dim=32, video_time_bins=10, sync_head=True)
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_avts_rejects_mismatched_embeddings() -> None:
    with pytest.raises(ValueError, match="equal size"):
        AVTSModel(VideoNet(width=4, embed_dim=16), AudioNet(width=4, embed_dim=32))


def test_tiny_two_stream_model_fits_fixed_batch() -> None:
    """Contrastive loss (Eq. 1, margin 0.99) on a fixed batch drops by a large factor in 50 Adam steps.

    The audio window is shortened to 40 frames to keep the test fast on two cores.
    """
    torch.manual_seed(0)
    model = AVTSModel(VideoNet(width=4, embed_dim=16), AudioNet(width=4, embed_dim=16, n_frames=40), normalize=False)
    video = torch.randn(8, 3, 4, 16, 16)
    audio = torch.randn(8, 1, 40, 40)
    y = torch.tensor([1.0, 0.0] * 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_fn() -> torch.Tensor:
        v_emb, a_emb, _ = model(video, audio)
        dist = (v_emb - a_emb).norm(dim=1)
        return (y * dist.pow(2) + (1 - y) * (0.99 - dist).clamp(min=0).pow(2)).mean()

    losses = []
    for _ in range(50):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn().item()
    assert losses[0] > 0.1
    assert final < losses[0] / 50
