"""GPU sampler of audio-visual training pairs (Korbar, Tran & Torresani, NeurIPS 2018, §2.3).

Each batch row ``i`` holds one video clip, starting at feature frame ``clip_start[i]`` of the row's audio
features. The sampler picks, for every row, the audio window that is paired with that clip:

* positive (kind 0): the aligned audio, same row at ``clip_start``;
* easy negative (kind 1): audio from another row, at a random start;
* hard negative (kind 2): same row, a window at least ``hard_gap`` frames away from the clip's window;
* super-hard negative (kind 3): same row, shifted by exactly ``super_hard_offset`` frames (the windows overlap).

Exactly ``B // 2`` rows are positives; the negatives are split by a :class:`NegativeMix`. Everything runs
as vectorized torch ops on the features' device, with no host synchronization, and draws its randomness
only from the given generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

POSITIVE = 0
EASY = 1
HARD = 2
SUPER_HARD = 3


@dataclass(frozen=True)
class NegativeMix:
    """Fractions of the negatives of each kind; non-negative and summing to 1."""

    easy: float
    hard: float
    super_hard: float = 0.0

    def __post_init__(self) -> None:
        fractions = {"easy": self.easy, "hard": self.hard, "super_hard": self.super_hard}
        for name, value in fractions.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"NegativeMix.{name} must be a finite fraction >= 0, got {value!r}")
        total = sum(fractions.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"NegativeMix fractions must sum to 1, got {total!r} ({self})")

    def counts(self, negatives: int) -> tuple[int, int, int]:
        """Split ``negatives`` rows into ``(easy, hard, super_hard)`` counts.

        Hard and super-hard get ``round(fraction * negatives)`` rows (never more than are left); easy gets
        the remainder.
        """
        hard = min(round(self.hard * negatives), negatives)
        super_hard = min(round(self.super_hard * negatives), negatives - hard)
        return negatives - hard - super_hard, hard, super_hard


@dataclass
class PairBatch:
    """The audio side of a batch of training pairs, row-aligned with the batch's video clips.

    Attributes:
        audio: ``(B, 1, n_filters, window)`` float32 audio windows (filters x time).
        label: ``(B,)`` float32, 1 for in-sync pairs and 0 for out-of-sync ones.
        kind: ``(B,)`` int64, 0 positive, 1 easy, 2 hard, 3 super-hard.
        source: ``(B,)`` int64, the batch row the audio was taken from.
        audio_start: ``(B,)`` int64, the window's start feature frame within the source row.
    """

    audio: torch.Tensor
    label: torch.Tensor
    kind: torch.Tensor
    source: torch.Tensor
    audio_start: torch.Tensor


def _uniform_index(u: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Map uniforms ``u`` in ``[0, 1)`` to integers uniform in ``[0, count)`` (0 where ``count`` <= 0)."""
    index = torch.floor(u * count.clamp_min(1)).long()
    return torch.minimum(index, (count - 1).clamp_min(0))


class PairSampler:
    """Builds the audio windows of positive and negative pairs on the device (§2.3).

    All lengths are in feature frames (100 per second). Every row must satisfy
    ``0 <= clip_start`` and ``clip_start + window <= valid <= T``; the sampler does not check this, since
    checking would synchronize with the device.

    Args:
        window: length of an audio window (100 = 1 s, the length of a video clip).
        hard_gap: minimum gap between a hard negative's window and the clip's window (50 = 0.5 s).
        super_hard_offset: shift of a super-hard negative's window from the clip's window; it must be
            smaller than ``window`` so that the two windows overlap.
    """

    def __init__(self, window: int = 100, hard_gap: int = 50, super_hard_offset: int = 50) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if hard_gap < 0:
            raise ValueError(f"hard_gap must be >= 0, got {hard_gap}")
        if not 0 < super_hard_offset < window:
            raise ValueError(f"super_hard_offset must lie in (0, window={window}), got {super_hard_offset}")
        self.window = window
        self.hard_gap = hard_gap
        self.super_hard_offset = super_hard_offset

    def sample(
        self,
        feats: torch.Tensor,
        valid: torch.Tensor,
        clip_start: torch.Tensor,
        mix: NegativeMix,
        generator: torch.Generator | None = None,
        video_id: torch.Tensor | None = None,
    ) -> PairBatch:
        """Pick the audio window of every row's pair.

        Args:
            feats: ``(B, T, n_filters)`` audio features (any float dtype).
            valid: ``(B,)`` int64, number of real leading frames of each row.
            clip_start: ``(B,)`` int64, feature frame where each row's video clip starts.
            mix: fractions of easy, hard and super-hard negatives.
            generator: torch generator on ``feats.device``, the only source of randomness.
            video_id: optional ``(B,)`` int64 video identity per row; easy negatives then come from a row of
                another video (rows of one video can share a batch, e.g. several validation clips).

        Returns:
            The :class:`PairBatch`. Rows too short to host their hard or super-hard negative get an easy
            negative instead (and ``kind`` says easy).

        Raises:
            ValueError: if ``B < 2`` (easy negatives need another row) or the shapes disagree.
        """
        batch, frames, _ = feats.shape
        if batch < 2:
            raise ValueError(f"PairSampler needs a batch of at least 2 rows for easy negatives, got {batch}")
        if valid.shape != (batch,) or clip_start.shape != (batch,):
            raise ValueError(
                f"valid and clip_start must have shape ({batch},), got {tuple(valid.shape)} "
                f"and {tuple(clip_start.shape)}"
            )
        if frames < self.window:
            raise ValueError(f"feats has {frames} frames, fewer than the window of {self.window}")
        device = feats.device
        valid = valid.to(device=device, dtype=torch.long)
        clip = clip_start.to(device=device, dtype=torch.long)
        rows = torch.arange(batch, device=device)

        kind = self._kinds(batch, mix, device, generator)
        u_other, u_easy, u_hard, u_super = torch.rand(
            (4, batch), dtype=torch.float64, device=device, generator=generator
        )

        other = self._other_rows(u_other, rows, video_id)
        easy_start = _uniform_index(u_easy, valid[other] - self.window + 1)
        hard_start, hard_ok = self._hard_starts(u_hard, valid, clip)
        super_start, super_ok = self._super_hard_starts(u_super, valid, clip)

        fallback = ((kind == HARD) & ~hard_ok) | ((kind == SUPER_HARD) & ~super_ok)
        kind = torch.where(fallback, EASY, kind)
        source = torch.where(kind == EASY, other, rows)
        start = torch.where(kind == EASY, easy_start, clip)
        start = torch.where(kind == HARD, hard_start, start)
        start = torch.where(kind == SUPER_HARD, super_start, start)

        frame_index = start[:, None] + torch.arange(self.window, device=device)
        audio = feats[source[:, None], frame_index]  # (B, window, n_filters)
        return PairBatch(
            audio=audio.float().transpose(1, 2).unsqueeze(1).contiguous(),
            label=(kind == POSITIVE).float(),
            kind=kind,
            source=source,
            audio_start=start,
        )

    @staticmethod
    def _other_rows(u: torch.Tensor, rows: torch.Tensor, video_id: torch.Tensor | None) -> torch.Tensor:
        """For every row, a uniformly chosen row of another video (of another row if none is available)."""
        batch = rows.numel()
        if video_id is None:
            return (rows + 1 + _uniform_index(u, torch.full_like(rows, batch - 1))) % batch
        video_id = video_id.to(rows.device)
        allowed = video_id[None, :] != video_id[:, None]
        allowed = torch.where(allowed.any(dim=1, keepdim=True), allowed, rows[None, :] != rows[:, None])
        pick = _uniform_index(u, allowed.sum(dim=1))
        chosen = (allowed.cumsum(dim=1) == (pick + 1)[:, None]) & allowed
        return chosen.long().argmax(dim=1)

    @staticmethod
    def _kinds(batch: int, mix: NegativeMix, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        """Requested kind of every row: ``B // 2`` positives and the negatives split by ``mix``, shuffled."""
        positives = batch // 2
        easy, hard, _ = mix.counts(batch - positives)
        rank = torch.randperm(batch, device=device, generator=generator)
        return (rank >= positives).long() + (rank >= positives + easy).long() + (rank >= positives + easy + hard).long()

    def _hard_starts(
        self, u: torch.Tensor, valid: torch.Tensor, clip: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform start over ``[0, clip - window - gap] ∪ [clip + window + gap, valid - window]``.

        Returns the starts and whether each row has any such start.
        """
        right_first = clip + self.window + self.hard_gap
        left_count = (clip - self.window - self.hard_gap + 1).clamp_min(0)
        right_count = (valid - self.window - right_first + 1).clamp_min(0)
        pick = _uniform_index(u, left_count + right_count)
        start = torch.where(pick < left_count, pick, right_first + pick - left_count)
        return start, left_count + right_count > 0

    def _super_hard_starts(
        self, u: torch.Tensor, valid: torch.Tensor, clip: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Start at ``clip ± super_hard_offset``, a random sign among those inside ``[0, valid - window]``.

        Returns the starts and whether each row has such a start.
        """
        before = clip - self.super_hard_offset
        after = clip + self.super_hard_offset
        before_ok = before >= 0
        after_ok = after + self.window <= valid
        take_before = before_ok & (~after_ok | (u < 0.5))
        return torch.where(take_before, before, after), before_ok | after_ok
