"""Atomic checkpoints: written to a temporary file, then renamed, so a kill never leaves a broken one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

LAST = "last.pt"


def save_checkpoint(folder: Path, state: dict[str, Any], epoch_end: int | None = None, keep: int = 2) -> Path:
    """Write ``last.pt`` (and ``epoch-NNNN.pt`` at an epoch end, keeping the newest ``keep``)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{LAST}.tmp-{uuid.uuid4().hex}"
    torch.save(state, tmp)
    os.replace(tmp, folder / LAST)
    if epoch_end is not None:
        target = folder / f"epoch-{epoch_end:04d}.pt"
        target.unlink(missing_ok=True)
        os.link(folder / LAST, target)  # same bytes, no second write; later `last.pt` updates replace, not modify
        for old in sorted(folder.glob("epoch-*.pt"))[:-keep]:
            old.unlink()
    return folder / LAST


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    return torch.load(path, map_location=device, weights_only=False)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs to continue as if never stopped."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Put back what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["generator"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
