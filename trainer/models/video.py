"""MCx video subnet of AVTS (Korbar, Tran & Torresani, NeurIPS 2018, §2.5).

A mixed-convolution network in the style of torchvision's ``mc3_18``
(``torchvision/models/video/resnet.py``) with the residual connections removed,
as the paper prescribes ("it lacks residual connections and differs in terms of
dimensionality in the final FC layer"): the early conv groups use 3D
(spatio-temporal) kernels, the later groups 2D (spatial only) kernels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_KERNEL_3D = (3, 3, 3)
_PADDING_3D = (1, 1, 1)
_KERNEL_2D = (1, 3, 3)
_PADDING_2D = (0, 1, 1)


def _conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel: tuple[int, int, int],
    stride: tuple[int, int, int],
    padding: tuple[int, int, int],
) -> nn.Sequential:
    """Return ``Conv3d (no bias) -> BatchNorm3d -> ReLU``."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class PlainBlock(nn.Sequential):
    """Two ``conv -> BN -> ReLU`` units with no shortcut connection.

    ``temporal=True`` uses 3x3x3 kernels, ``temporal=False`` uses 1x3x3 (2D)
    kernels. Only the first conv carries ``spatial_stride``; time is never
    downsampled.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial_stride: int, temporal: bool) -> None:
        kernel = _KERNEL_3D if temporal else _KERNEL_2D
        padding = _PADDING_3D if temporal else _PADDING_2D
        super().__init__(
            _conv_bn_relu(in_channels, out_channels, kernel, (1, spatial_stride, spatial_stride), padding),
            _conv_bn_relu(out_channels, out_channels, kernel, (1, 1, 1), padding),
        )


class VideoNet(nn.Module):
    """MCx video subnet (no residual connections) mapping a clip to an embedding.

    Input ``(B, 3, T, H, W)``. Layer table for MC3, ``width`` w = 64, input
    3 x 25 x 112 x 112 (``T x H x W``; every conv is followed by BN + ReLU)::

        group  layer            kernel   stride   channels  output (C x T x H x W)
        -----  ---------------  -------  -------  --------  ----------------------
        conv1  stem             3x7x7    1,2,2    w   =  64     64 x 25 x 56 x 56
        conv2  2 blocks x 2     3x3x3    1,1,1    w   =  64     64 x 25 x 56 x 56
        conv3  2 blocks x 2     1x3x3    1,2,2 *  2w  = 128    128 x 25 x 28 x 28
        conv4  2 blocks x 2     1x3x3    1,2,2 *  4w  = 256    256 x 25 x 14 x 14
        conv5  2 blocks x 2     1x3x3    1,2,2 *  8w  = 512    512 x 25 x  7 x  7
        pool   AdaptiveAvgPool3d((bins, 1, 1)) + flatten       512 * bins  (features)
        fc     Linear(8w * bins, embed_dim)                    128  (embedding)

    ``temporal_bins`` (default 1: global pooling, as in MC3) keeps that many time bins in the pooled
    features. Global pooling makes the embedding nearly blind to *when* things happen inside the clip;
    bins let it encode timing, which synchronization needs when appearance gives nothing away (the
    ``avts-synth`` data, for instance). The audio subnet keeps 5 time bins (its pool6).

    ``*`` only the first conv of the group is strided; the other three convs
    have stride 1. Paddings are (1,3,3) for the stem, (1,1,1) for 3x3x3 and
    (0,1,1) for 1x3x3 kernels, so T is preserved and H, W are halved (rounding
    up) by each strided conv.

    Other members of the family differ only in the kernels of groups 2..5
    (shapes, strides and channels are unchanged): groups ``1..x-1`` are 3D and
    groups ``x..5`` are 2D, i.e.

    * MC2: only the stem is 3D; conv2..conv5 use 1x3x3.
    * MC4: conv2 and conv3 use 3x3x3; conv4, conv5 use 1x3x3.
    * MC5: conv2..conv4 use 3x3x3; only conv5 uses 1x3x3.

    Attributes:
        mc: the x of MCx (first 2D group).
        feature_dim: size of ``forward_features`` output (8 * width * temporal_bins).
        embed_dim: size of ``forward`` output.
    """

    def __init__(self, mc: int = 3, width: int = 64, embed_dim: int = 128, temporal_bins: int = 1) -> None:
        super().__init__()
        if mc not in (2, 3, 4, 5):
            raise ValueError(f"mc must be one of 2, 3, 4, 5 (MC2..MC5), got {mc}")
        if temporal_bins < 1:
            raise ValueError(f"temporal_bins must be >= 1, got {temporal_bins}")
        self.mc = mc
        self.feature_dim = 8 * width * temporal_bins
        self.embed_dim = embed_dim

        self.conv1 = _conv_bn_relu(3, width, (3, 7, 7), (1, 2, 2), (1, 3, 3))
        self.conv2 = self._make_group(2, width, width, spatial_stride=1)
        self.conv3 = self._make_group(3, width, 2 * width, spatial_stride=2)
        self.conv4 = self._make_group(4, 2 * width, 4 * width, spatial_stride=2)
        self.conv5 = self._make_group(5, 4 * width, 8 * width, spatial_stride=2)
        self.pool = nn.AdaptiveAvgPool3d((temporal_bins, 1, 1))
        self.fc = nn.Linear(self.feature_dim, embed_dim)
        self._init_weights()

    def _make_group(self, group: int, in_channels: int, out_channels: int, spatial_stride: int) -> nn.Sequential:
        """Two plain blocks; 3D kernels if ``group < mc`` else 2D kernels."""
        temporal = group < self.mc
        return nn.Sequential(
            PlainBlock(in_channels, out_channels, spatial_stride, temporal),
            PlainBlock(out_channels, out_channels, 1, temporal),
        )

    def _init_weights(self) -> None:
        """Initialise as torchvision's video ResNets do."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled conv5 features, ``(B, 3, T, H, W) -> (B, 8 * width * temporal_bins)``."""
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.conv4(x)
        x = self.conv5(x)
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding in the common audio-visual space, ``(B, embed_dim)``."""
        return self.fc(self.forward_features(x))


def mc2(**kwargs: Any) -> VideoNet:
    """MC2: 3D stem, 2D groups 2..5."""
    return VideoNet(mc=2, **kwargs)


def mc3(**kwargs: Any) -> VideoNet:
    """MC3 (the paper's default): 3D groups 1..2, 2D groups 3..5."""
    return VideoNet(mc=3, **kwargs)


def mc4(**kwargs: Any) -> VideoNet:
    """MC4: 3D groups 1..3, 2D groups 4..5."""
    return VideoNet(mc=4, **kwargs)


def mc5(**kwargs: Any) -> VideoNet:
    """MC5: 3D groups 1..4, 2D group 5."""
    return VideoNet(mc=5, **kwargs)


_BUILDERS = {"mc2": mc2, "mc3": mc3, "mc4": mc4, "mc5": mc5}


def video_net(name: str, **kwargs: Any) -> VideoNet:
    """Build a video subnet by name (``"mc2"``, ``"mc3"``, ``"mc4"`` or ``"mc5"``)."""
    try:
        builder = _BUILDERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown video architecture {name!r}; expected one of {sorted(_BUILDERS)}") from None
    return builder(**kwargs)
