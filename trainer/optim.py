"""Optimizer and learning-rate schedule (§3.1): SGD with momentum or Adam; LR × factor on a loss plateau.

The plateau rule watches the epoch's training loss. At a curriculum stage change the loss jumps (harder
negatives), so the rule starts afresh there (:func:`plateau_schedule` again): otherwise the new stage's
higher loss would count as "no improvement" against the easy stage's best and cut the LR every few epochs
through the very stage that gives the paper its gain (Table 1).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

PlateauSchedule = torch.optim.lr_scheduler.ReduceLROnPlateau


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``sgd`` (with momentum) or ``adam``."""
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def plateau_schedule(optimizer: torch.optim.Optimizer, patience: int, factor: float) -> PlateauSchedule:
    """LR × ``factor`` when the epoch loss has not decreased for more than ``patience`` epochs (fresh tracking)."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)
