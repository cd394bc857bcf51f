"""Contrastive loss of Eq. 1 and the distance-threshold sync rule (Korbar, Tran & Torresani, NeurIPS 2018, §2.2).

The audio and video nets map a pair to embeddings ``f_a(a)`` and ``f_v(v)``; the loss pulls in-sync pairs
together and pushes out-of-sync pairs at least ``margin`` apart (η = 0.99 in §3.1). A pair is then
predicted in sync when its distance is below a threshold τ.
"""

from __future__ import annotations

import torch

_EPS = 1e-12  # added to squared distances so that the square root has a finite gradient at 0


def _squared_distance(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Float32 squared Euclidean distance between the rows of ``v`` and ``a``."""
    return (v.float() - a.float()).pow(2).sum(dim=-1)


def pair_distance(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Euclidean distance ``||v - a||`` between embeddings ``(B, D)``, as a float32 ``(B,)`` tensor."""
    with torch.autocast(device_type=v.device.type, enabled=False):
        return torch.sqrt(_squared_distance(v, a) + _EPS)


def contrastive_loss(v: torch.Tensor, a: torch.Tensor, label: torch.Tensor, margin: float = 0.99) -> torch.Tensor:
    """Eq. 1: mean over the batch of ``y d² + (1 - y) max(margin - d, 0)²`` with ``d = ||v - a||``.

    Args:
        v: ``(B, D)`` video embeddings.
        a: ``(B, D)`` audio embeddings.
        label: ``(B,)`` 1 for in-sync pairs, 0 for out-of-sync ones.
        margin: η, the distance beyond which out-of-sync pairs cost nothing.

    Returns:
        A float32 scalar, computed in float32 even under autocast, with finite gradients at ``d = 0``.
    """
    with torch.autocast(device_type=v.device.type, enabled=False):
        squared = _squared_distance(v, a)
        distance = torch.sqrt(squared + _EPS)
        y = label.float()
        return (y * squared + (1 - y) * (margin - distance).clamp_min(0).pow(2)).mean()


def accuracy_at_threshold(dist: torch.Tensor, label: torch.Tensor, tau: float) -> float:
    """Fraction of pairs classified right by the rule "in sync iff ``dist < tau``"."""
    predicted = dist.double() < tau
    return (predicted == (label > 0.5)).double().mean().item()


def best_threshold(dist: torch.Tensor, label: torch.Tensor) -> tuple[float, float]:
    """Threshold τ maximizing the accuracy of "in sync iff ``dist < τ``" on these pairs, and that accuracy.

    Evaluates every cut of the sorted distances at once: below the smallest distance, between each pair of
    distinct neighbours (at their midpoint), and just above the largest. Ties go to the smallest τ.
    """
    if dist.numel() == 0:
        raise ValueError("best_threshold needs at least one pair")
    order = torch.argsort(dist.double().flatten())
    ordered = dist.double().flatten()[order]
    positive = (label.flatten()[order] > 0.5).long()
    count = ordered.numel()
    # Cut k predicts the k smallest distances in sync: right = positives below + negatives above.
    positives_below = torch.cat([positive.new_zeros(1), positive.cumsum(0)])
    cuts = torch.arange(count + 1, device=ordered.device)
    negatives_above = (count - positives_below[-1]) - (cuts - positives_below)
    right = positives_below + negatives_above
    # A cut between equal distances cannot be realized by a threshold.
    splittable = torch.ones(count + 1, dtype=torch.bool, device=ordered.device)
    splittable[1:-1] = ordered[1:] > ordered[:-1]
    best = int(torch.where(splittable, right, -1).argmax())
    if best == 0:
        tau = ordered[0].item()
    elif best == count:
        tau = torch.nextafter(ordered[-1], ordered.new_tensor(float("inf"))).item()
    else:
        tau = ((ordered[best - 1] + ordered[best]) / 2).item()
    return tau, int(right[best]) / count
