"""Checkpoints: atomic writes, a fallback to the newest intact one, and the trained model for other tools.

A checkpoint is one ``torch.save`` dict: ``format``, ``model_spec`` (to rebuild the model), ``stats``
(the audio normalization it trained with, so a checkpoint is self-sufficient), ``model``, ``optimizer``,
``scheduler``, ``state`` (where training stands), ``rng`` (every rank's random state) and ``config``.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from avts.atomic import atomic_path
from avts.stats import FeatureStats
from trainer.models import AVTSModel, ModelSpec, build_avts

LAST = "last.pt"
FORMAT = 2


class CheckpointError(Exception):
    """No usable checkpoint where one was expected; the message says what was tried."""


def save_checkpoint(folder: Path, content: dict[str, Any], epoch_end: int | None = None, keep: int = 2) -> Path:
    """Write ``last.pt`` (and ``epoch-NNNN.pt`` at an epoch end, keeping the newest ``keep``)."""
    serialized = io.BytesIO()  # torch.save reports a full disk as a RuntimeError; a plain write, as ENOSPC
    torch.save({"format": FORMAT, **content}, serialized)
    with atomic_path(folder / LAST) as tmp:
        tmp.write_bytes(serialized.getbuffer())
    if epoch_end is not None:  # a copy, not a hard link: damage to one file must not reach the other
        with atomic_path(folder / f"epoch-{epoch_end:04d}.pt") as tmp:
            shutil.copyfile(folder / LAST, tmp)
        for old in sorted(folder.glob("epoch-*.pt"))[:-keep]:
            old.unlink()
    return folder / LAST


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a clear error if it is not one."""
    try:
        content = torch.load(path, map_location=device, weights_only=True)  # a pickle's code never runs
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an AVTS checkpoint of format {FORMAT}")
    weights = content.get("model")
    if isinstance(weights, dict) and not all_finite(weights.values()):  # every result from them would be NaN
        raise CheckpointError(
            f"{path} holds weights that are not finite (NaN or infinity: a diverged run?); use an earlier checkpoint"
        )
    return content


def candidates(folder: Path) -> list[Path]:
    """Checkpoints to resume from, best first: ``last.pt``, then epoch checkpoints from the newest."""
    return [path for path in [folder / LAST, *sorted(folder.glob("epoch-*.pt"), reverse=True)] if path.exists()]


def load_resumable(folder: Path, device: torch.device, console: Console) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``folder`` (saying loudly which ones were skipped), or None if none
    exists; an error when checkpoints exist but none can be read."""
    tried = candidates(folder)
    for path in tried:
        try:
            content = load_checkpoint(path, device)
        except CheckpointError as error:
            console.print(f"[bold yellow]warning: {error}; trying an older checkpoint")
            continue
        if path.name != LAST:
            console.print(f"[bold yellow]warning: resuming from {path.name} instead of {LAST}")
        return content
    if tried:
        raise CheckpointError(f"none of the checkpoints in {folder} can be read: {', '.join(p.name for p in tried)}")
    return None


def all_finite(tensors: Iterable[Any]) -> bool:
    """True when none of the floating-point tensors among ``tensors`` holds a NaN or an infinity."""
    return all(
        bool(torch.isfinite(tensor).all())
        for tensor in tensors
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
    )


def weights_are_finite(model: torch.nn.Module) -> bool:
    """True when no parameter or buffer holds a NaN or an infinity."""
    return all_finite([*model.parameters(), *model.buffers()])


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


@dataclass
class TrainedModel:
    """A trained AVTS model with what it needs to be used: its shape and its audio normalization."""

    model: AVTSModel
    spec: ModelSpec
    stats: FeatureStats
    config: dict[str, Any]


TRAIN_TOOL, FINETUNE_TOOL = "avts-train", "avts-finetune"


def checkpoint_tool(content: dict[str, Any]) -> str | None:
    """Which tool wrote a checkpoint: avts-train keeps a ``model_spec``, avts-finetune a ``classifier_spec``; None
    for neither."""
    if "classifier_spec" in content:
        return FINETUNE_TOOL
    if "model_spec" in content:
        return TRAIN_TOOL
    return None


def load_trained(path: Path, device: torch.device | str = "cpu") -> TrainedModel:
    """Rebuild the model of an `avts-train` checkpoint, in eval mode, for the downstream tools."""
    content = load_checkpoint(path, device)
    if "model_spec" not in content or "stats" not in content:
        raise CheckpointError(
            f"{path} is not an avts-train checkpoint (an avts-finetune one?): it holds no AVTS two-stream model"
        )
    spec = ModelSpec.from_dict(content["model_spec"])
    model = build_avts(spec)
    try:
        model.load_state_dict(content["model"])
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: its weights do not fit its declared architecture ({str(error)[:200]})"
        ) from None
    return TrainedModel(model.to(device).eval(), spec, FeatureStats.from_dict(content["stats"]), content["config"])
