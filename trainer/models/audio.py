"""VGG-style audio subnet of AVTS (Korbar, Tran & Torresani, NeurIPS 2018, §2.5).

The audio stream of SyncNet (Chung & Zisserman, "Out of time: automated lip
sync in the wild", 2016), adapted to a 1 s window of 40 log filterbank
energies x 100 frames (10 ms step) instead of SyncNet's 13 x 20 MFCCs.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Return ``Conv2d 3x3 pad 1 (no bias) -> BatchNorm2d -> ReLU``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _pooled(size: int, stride: int) -> int:
    """Output length of a 3-wide max pool with padding 1 and ``stride``."""
    return (size + 2 * 1 - 3) // stride + 1


class AudioNet(nn.Module):
    """SyncNet-style VGG audio subnet mapping a filterbank window to an embedding.

    Input ``(B, 1, n_filters, n_frames)``. Layer table for the default
    40 x 100 input and ``width`` = 64 (channels scale by ``width / 64``; every
    conv is 3x3, stride 1, padding 1, followed by BN + ReLU)::

        layer  op                               channels  output (C x F x T)
        -----  -------------------------------  --------  ------------------
        input                                          1      1 x 40 x 100
        conv1  conv 3x3                               64     64 x 40 x 100
        conv2  conv 3x3                              192    192 x 40 x 100
        pool2  maxpool 3x3, stride (1,2), pad 1      192    192 x 40 x  50
        conv3  conv 3x3                              384    384 x 40 x  50
        conv4  conv 3x3                              256    256 x 40 x  50
        conv5  conv 3x3                              256    256 x 40 x  50
        pool5  maxpool 3x3, stride (2,2), pad 1      256    256 x 20 x  25
        pool6  adaptive max pool to 5 x time_bins    256    256 x  5 x   5   (time_bins = 5)
        fc6    Linear(256*5*time_bins = 6400, 512) + BN1d + ReLU  512
        fc7    Linear(512, embed_dim)                             128

    SyncNet's fc6 spans a 5 x 4 map of its 13 x 20 MFCC input; pool6 gives fc6 the same small span on the
    larger filterbank map (a Linear over all of 256 x 20 x 25 would hold 65M weights).

    SyncNet's 1x1 pool1 is a no-op and is dropped. The padded pools give
    ``F' = ceil(F / 2)`` and ``T' = ceil(ceil(T / 2) / 2)``.

    Attributes:
        feature_dim: size of the flattened conv5 (post-pool5) features,
            ``C5 * F' * T'`` (128000 for the defaults).
        conv5_shape: ``(C5, F', T')`` of ``conv5_features`` ((256, 20, 25)).
        embed_dim: size of ``forward`` output.
    """

    def __init__(
        self, width: int = 64, embed_dim: int = 128, n_filters: int = 40, n_frames: int = 100, time_bins: int = 5
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (max(1, round(c * width / 64)) for c in (64, 192, 384, 256, 256))
        self.conv1 = _conv_bn_relu(1, c1)
        self.conv2 = _conv_bn_relu(c1, c2)
        self.pool2 = nn.MaxPool2d(3, stride=(1, 2), padding=1)
        self.conv3 = _conv_bn_relu(c2, c3)
        self.conv4 = _conv_bn_relu(c3, c4)
        self.conv5 = _conv_bn_relu(c4, c5)
        self.pool5 = nn.MaxPool2d(3, stride=(2, 2), padding=1)

        self.conv5_shape = (c5, _pooled(n_filters, 2), _pooled(_pooled(n_frames, 2), 2))
        self.feature_dim = c5 * self.conv5_shape[1] * self.conv5_shape[2]
        self.embed_dim = embed_dim
        self.pool6 = nn.AdaptiveMaxPool2d((5, time_bins))
        self.fc6 = nn.Sequential(nn.Linear(c5 * 5 * time_bins, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True))
        self.fc7 = nn.Linear(512, embed_dim)

    def conv5_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv5 activations after pool5, ``(B, C5, F', T')``.

        The features of this project's audio probe (:mod:`trainer.downstream`). §3.4 trains its SVM on "the
        activations from the conv_5 layer" without saying whether before or after pooling; after pool5 is this
        project's reading.
        """
        x = self.pool2(self.conv2(self.conv1(x)))
        return self.pool5(self.conv5(self.conv4(self.conv3(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding in the common audio-visual space, ``(B, embed_dim)``."""
        return self.fc7(self.fc6(torch.flatten(self.pool6(self.conv5_features(x)), 1)))
