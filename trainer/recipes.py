"""Named presets of `avts-train` settings (``--recipe NAME``), applied on top of :class:`TrainConfig`'s defaults.

The defaults of :class:`~trainer.config.TrainConfig` stay the paper's (SGD, batch 16, MC3 width 64, 112² crops,
90 epochs). A recipe changes some of them for a purpose, and flags given on the command line still win over
it: precedence is *explicit flag > recipe > TrainConfig default*.

``cpu-demo`` is the configuration of ``scripts/demo.sh`` and of ``tests/test_learning.py``: it learns
`avts-synth` synchronization on a 2-core CPU in minutes (README, "Learning on a CPU"; figures in
``benchmarks/RESULTS.md``). Why it departs from the defaults:

* Adam, lr 0.001 instead of SGD: every run first falls onto the chance plateau of Eq. 1 (all pairs at
  distance η/2, loss η²/4 ≈ 0.245). Adam, whose step does not shrink with the plateau's small gradients,
  leaves it after ~3 000 clips; SGD with momentum 0.9 was still there after 4 096 clips at lr 0.01, 0.1 and
  0.3, and left it after ~13 000 at lr 0.05.
* width 4 for both subnets, 32² crops: a network and an input small enough for a CPU (~60 clips/s on 2
  cores); width 8 at 48² reached the same accuracy at three times the cost.
* 10 time bins in both subnets: on `avts-synth` data only *when* events happen ties sound to picture,
  and MC3's global pooling hides when (README, `avts-synth`).
* batch 32 and 1024 clips per epoch from resampled shards: 16 easy negatives per step (batch 16 and 64
  left the plateau later), and an epoch short enough to see the curve move every 15 seconds.
* easy negatives only, 8 epochs: the demo's claim is about easy negatives, and on a few minutes' budget
  the second curriculum stage would take epochs the first one needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from trainer.config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A named set of :class:`TrainConfig` field values and what it is for."""

    name: str
    purpose: str
    settings: Mapping[str, Any]

    def describe(self) -> str:
        """``name: field=value, ...`` for the run's log."""
        return f"{self.name}: " + ", ".join(f"{key}={value}" for key, value in self.settings.items())


CPU_DEMO = Recipe(
    name="cpu-demo",
    purpose="learn avts-synth synchronization on a 2-core CPU in minutes (scripts/demo.sh)",
    settings=MappingProxyType(
        {
            "optimizer": "adam",
            "lr": 0.001,
            "width": 4,
            "audio_width": 4,
            "crop_size": 32,
            "video_time_bins": 10,
            "audio_time_bins": 10,
            "batch_size": 32,
            "epoch_size": 1024,
            "epochs": 8,
            "curriculum": "0:easy=1",
            "workers": 1,
            "val_clips": 4,
            "log_every": 8,
        }
    ),
)

RECIPES: Mapping[str, Recipe] = MappingProxyType({recipe.name: recipe for recipe in (CPU_DEMO,)})


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}") from None


def recipe_config(name: str, **fields: Any) -> TrainConfig:
    """A :class:`TrainConfig` from the recipe's settings with ``fields`` on top (they win), e.g.
    ``recipe_config("cpu-demo", shards="shards", out=Path("runs/demo"))``."""
    return TrainConfig(**{**get_recipe(name).settings, **fields})


def unknown_fields(recipe: Recipe) -> list[str]:
    """Settings of ``recipe`` that are not :class:`TrainConfig` fields (a recipe must have none)."""
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    return sorted(set(recipe.settings) - names)
