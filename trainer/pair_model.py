"""The trained module: the two-stream net, optional L2 normalization, optional sync head (§3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import AVTSNet, SyncHead


class PairModel(nn.Module):
    """Embeds clips and audio windows into the common space and, with a head, scores pairs as in sync.

    With ``normalize`` the embeddings are L2-normalized, so distances lie in [0, 2] and the contrastive
    margin η = 0.99 of Eq. 1 has a fixed meaning (the paper does not say how the scale is fixed).
    """

    def __init__(self, net: AVTSNet, head: SyncHead | None, normalize: bool = True) -> None:
        super().__init__()
        self.net = net
        self.head = head
        self.normalize = normalize

    def _finish(self, embedding: torch.Tensor) -> torch.Tensor:
        return F.normalize(embedding.float(), dim=1) if self.normalize else embedding

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` clips → ``(B, E)`` embeddings."""
        return self._finish(self.net.video(video))

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 40, 100)`` windows → ``(B, E)`` embeddings."""
        return self._finish(self.net.audio(audio))

    def forward(self, video: torch.Tensor,
                audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Embeddings of both streams and, with a head, the in-sync logits ``(B, 2)``."""
        video_emb, audio_emb = self.embed_video(video), self.embed_audio(audio)
        logits = self.head(video_emb, audio_emb) if self.head is not None else None
        return video_emb, audio_emb, logits
