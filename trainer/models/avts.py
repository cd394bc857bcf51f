"""Two-stream AVTS network (Korbar, Tran & Torresani, NeurIPS 2018, §2.5, §3.2)."""

from __future__ import annotations

import torch
from torch import nn

from .audio import AudioNet
from .video import VideoNet, video_net


class AVTSNet(nn.Module):
    """Video and audio subnets embedding both modalities in a common space.

    Trained with the contrastive loss of Eq. 1 on the distance between the two
    embeddings; the streams are independent until the loss.
    """

    def __init__(self, video: VideoNet, audio: AudioNet) -> None:
        super().__init__()
        if video.embed_dim != audio.embed_dim:
            raise ValueError(
                f"video and audio embeddings must have equal size, got video {video.embed_dim} "
                f"and audio {audio.embed_dim}"
            )
        self.video = video
        self.audio = audio
        self.embed_dim = video.embed_dim

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a clip ``(B, 3, T, H, W)`` and a filterbank window ``(B, 1, F, T_a)``.

        Returns ``(v_emb, a_emb)``, each ``(B, embed_dim)``.
        """
        return self.video(video), self.audio(audio)


def build_avts(video_arch: str = "mc3", width: int = 64, audio_width: int = 64, embed_dim: int = 128,
               video_time_bins: int = 1, audio_time_bins: int = 5) -> AVTSNet:
    """Build an :class:`AVTSNet` from a video architecture name (``"mc2"``..``"mc5"``) and widths."""
    return AVTSNet(
        video_net(video_arch, width=width, embed_dim=embed_dim, temporal_bins=video_time_bins),
        AudioNet(width=audio_width, embed_dim=embed_dim, time_bins=audio_time_bins),
    )


class SyncHead(nn.Module):
    """Second-stage AVTS classifier of §3.2: concat -> FC 512 -> ReLU -> FC 2 (logits)."""

    def __init__(self, embed_dim: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2 * embed_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 2),
        )

    def forward(self, v_emb: torch.Tensor, a_emb: torch.Tensor) -> torch.Tensor:
        """Synchronisation logits ``(B, 2)`` (class 1 = in sync) from the two embeddings."""
        return self.layers(torch.cat([v_emb, a_emb], dim=1))
