"""The two-stream AVTS model (Korbar, Tran & Torresani, NeurIPS 2018, §2.5, §3.2) and how to build it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .audio import AudioNet
from .video import VideoNet, video_net


class SyncHead(nn.Module):
    """Second-stage AVTS classifier of §3.2: concat -> FC 512 -> ReLU -> FC 2 (logits)."""

    def __init__(self, embed_dim: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(2 * embed_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))

    def forward(self, v_emb: torch.Tensor, a_emb: torch.Tensor) -> torch.Tensor:
        """Synchronisation logits ``(B, 2)`` (class 1 = in sync) from the two embeddings."""
        return self.layers(torch.cat([v_emb, a_emb], dim=1))


class AVTSModel(nn.Module):
    """Video and audio subnets embedding both modalities in a common space, and optionally the sync head.

    The streams are independent until the loss (Eq. 1 on the distance between the embeddings). With
    ``normalize`` the embeddings are L2-normalized, so distances lie in [0, 2] and the margin η = 0.99 has a
    fixed meaning (the paper does not say how the scale is fixed).
    """

    def __init__(self, video: VideoNet, audio: AudioNet, head: SyncHead | None = None, normalize: bool = True) -> None:
        super().__init__()
        if video.embed_dim != audio.embed_dim:
            raise ValueError(
                f"video and audio embeddings must have equal size, got video {video.embed_dim} "
                f"and audio {audio.embed_dim}"
            )
        self.video = video
        self.audio = audio
        self.head = head
        self.normalize = normalize
        self.embed_dim = video.embed_dim

    def _finish(self, embedding: torch.Tensor) -> torch.Tensor:
        return F.normalize(embedding.float(), dim=1) if self.normalize else embedding

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` clips → ``(B, E)`` embeddings."""
        return self._finish(self.video(video))

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 40, 100)`` filterbank windows → ``(B, E)`` embeddings."""
        return self._finish(self.audio(audio))

    def forward(
        self, video: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Embeddings of both streams and, with a head, the in-sync logits ``(B, 2)``."""
        video_emb, audio_emb = self.embed_video(video), self.embed_audio(audio)
        logits = self.head(video_emb, audio_emb) if self.head is not None else None
        return video_emb, audio_emb, logits


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides the model's shape; stored in checkpoints so any tool can rebuild the model."""

    arch: str = "mc3"
    width: int = 64
    audio_width: int = 64
    embed_dim: int = 128
    video_time_bins: int = 1
    audio_time_bins: int = 5
    embedding_norm: str = "l2"
    sync_head: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Rebuild from :meth:`to_dict`."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def build_avts(spec: ModelSpec) -> AVTSModel:
    """Build the model a :class:`ModelSpec` describes (``arch`` is ``"mc2"``..``"mc5"``)."""
    return AVTSModel(
        video_net(spec.arch, width=spec.width, embed_dim=spec.embed_dim, temporal_bins=spec.video_time_bins),
        AudioNet(width=spec.audio_width, embed_dim=spec.embed_dim, time_bins=spec.audio_time_bins),
        SyncHead(spec.embed_dim) if spec.sync_head else None,
        normalize=spec.embedding_norm == "l2",
    )
