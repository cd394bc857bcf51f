"""Checkpoints: round trip, epoch copies, fallback to the newest intact one, and rebuilding the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console

from avts.stats import FeatureStats
from trainer.checkpoint import (
    CheckpointError,
    candidates,
    load_checkpoint,
    load_resumable,
    load_trained,
    save_checkpoint,
    weights_are_finite,
)
from trainer.models import ModelSpec, build_avts

SPEC = ModelSpec(arch="mc2", width=4, audio_width=4, embed_dim=8)
STATS = FeatureStats(mean=[1.0] * 40, std=[2.0] * 40, frames=10, videos=1, fraction=0.2, seed=0)


def content(model: torch.nn.Module, epoch: int) -> dict:
    return {
        "model_spec": SPEC.to_dict(),
        "stats": STATS.to_dict(),
        "model": model.state_dict(),
        "state": {"epoch": epoch},
        "config": {"width": 4},
    }


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"))


def test_round_trip_and_epoch_copies(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_avts(SPEC)
    for epoch in (1, 2, 3):
        save_checkpoint(tmp_path, content(model, epoch), epoch_end=epoch, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002.pt", "epoch-0003.pt", "last.pt"]
    assert (tmp_path / "epoch-0003.pt").stat().st_ino != (tmp_path / "last.pt").stat().st_ino  # a copy
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded["state"] == {"epoch": 3} and loaded["format"] == 2
    assert all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())
    assert candidates(tmp_path) == [tmp_path / "last.pt", tmp_path / "epoch-0003.pt", tmp_path / "epoch-0002.pt"]


def test_damaged_checkpoints_fall_back_to_the_newest_readable(tmp_path: Path) -> None:
    model = build_avts(SPEC)
    for epoch in (1, 2):
        save_checkpoint(tmp_path, content(model, epoch), epoch_end=epoch)
    (tmp_path / "last.pt").write_bytes(b"")
    (tmp_path / "epoch-0002.pt").write_bytes((tmp_path / "epoch-0001.pt").read_bytes()[:1000])
    assert load_resumable(tmp_path, torch.device("cpu"), quiet())["state"] == {"epoch": 1}
    (tmp_path / "epoch-0001.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="none of the checkpoints"):
        load_resumable(tmp_path, torch.device("cpu"), quiet())
    assert load_resumable(tmp_path / "empty", torch.device("cpu"), quiet()) is None


def test_other_files_are_not_checkpoints(tmp_path: Path) -> None:
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an AVTS checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_load_trained_refuses_a_checkpoint_without_an_avts_model(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, {"model": {}, "state": {"epoch": 1}, "classes": ["a", "b"]})  # as avts-finetune's
    with pytest.raises(CheckpointError, match="not an avts-train checkpoint"):
        load_trained(tmp_path / "last.pt")


def test_load_trained_rebuilds_the_same_model_with_its_stats(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_avts(SPEC).eval()
    save_checkpoint(tmp_path, content(model, 1))
    trained = load_trained(tmp_path / "last.pt")
    assert trained.spec == SPEC and trained.stats == STATS and not trained.model.training
    video, audio = torch.randn(2, 3, 4, 16, 16), torch.randn(2, 1, 40, 100)
    with torch.no_grad():
        assert torch.equal(trained.model.embed_audio(audio), model.embed_audio(audio))
        assert torch.equal(trained.model.embed_video(video), model.embed_video(video))


def test_weights_are_finite_sees_a_single_nan() -> None:
    model = build_avts(SPEC)
    assert weights_are_finite(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[3] = float("nan")
    assert not weights_are_finite(model)


class _Payload:
    """A pickle that runs code when loaded (what a crafted .pt file does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path: Path) -> None:
    """Every tool loads checkpoints through load_checkpoint: with weights_only=False a crafted file's payload ran
    (it made a file) before the file was refused."""
    marker = tmp_path / "PWNED"
    torch.save({"format": 1, "model": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_full_disk_while_saving_is_an_os_error_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save into a full disk raised RuntimeError ("unexpected pos"), which the trainer's ENOSPC message
    did not catch: a traceback. The checkpoint is now serialized in memory and written as plain bytes."""
    model = build_avts(ModelSpec(width=4, audio_width=4, embed_dim=8))
    save_checkpoint(tmp_path, content(model, 1))
    before = (tmp_path / "last.pt").read_bytes()

    def full_disk(self: Path, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError) as error:
        save_checkpoint(tmp_path, content(model, 2))
    assert error.value.errno == 28
    assert (tmp_path / "last.pt").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
