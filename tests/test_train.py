"""avts-train end to end on CPU: tiny epochs from synthetic shards, exact resume after SIGKILL, DDP with gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import REPO, torchrun_command

TINY = [
    "--batch-size",
    "2",
    "--width",
    "4",
    "--audio-width",
    "4",
    "--embed-dim",
    "16",
    "--crop-size",
    "32",
    "--val-clips",
    "2",
    "--log-every",
    "1",
    "--shuffle-buffer",
    "20",
    "--audio-context",
    "4",
]


def tiny_arguments(shards: Path, out: Path) -> list[str]:
    """avts-train's flags for a tiny CPU run on the synthetic shards into ``out``."""
    return ["--shards", str(shards / "shards"), "--out", str(out), "--device", "cpu", *TINY]


def train_command(shards: Path, out: Path, *extra: str) -> list[str]:
    """The avts-train command line for a tiny CPU run."""
    return [sys.executable, "-m", "trainer.cli", *tiny_arguments(shards, out), *extra]


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run to completion in CI mode (plain progress lines)."""
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def records(run_dir: Path, kind: str) -> list[dict]:
    """Metrics records of one kind."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def audit(run_dir: Path, rank: int = 0) -> list[dict]:
    """Per-epoch audit records of one rank."""
    return [json.loads(line) for line in (run_dir / f"audit-rank{rank}.jsonl").read_text().splitlines()]


def test_two_tiny_epochs_end_to_end(train_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run(train_command(train_shards, out, "--epochs", "2", "--workers", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = records(out, "epoch")
    videos = pd.read_parquet(train_shards / "manifests" / "videos.parquet")
    per_epoch = int((videos.split == "train").sum()) // 2  # batch 2, whole batches only, one process
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert [e["step"] for e in epochs] == [per_epoch, 2 * per_epoch]
    assert [e["stage"] for e in epochs] == [0, 1]  # the paper's curriculum scaled to 2 epochs
    assert epochs[0]["mix"]["hard"] == 0.0 and epochs[1]["mix"]["hard"] == 0.25
    for epoch in epochs:
        # Eq. 1 on unit vectors, half positives (d² ≤ 4) and half negatives ((η − d)² ≤ η²): mean < 2.5
        assert epoch["lr"] == 0.01 and 0.0 < epoch["train_loss"] < 2.5
        assert epoch["val_acc_easy"] is not None and epoch["val_acc_mixed"] is not None
    steps = records(out, "step")
    assert [s["step"] for s in steps] == list(range(1, 2 * per_epoch + 1))  # --log-every 1
    assert all(s["clips_per_s"] > 0 for s in steps)
    for name in ("loss.png", "accuracy.png", "lr.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["epoch-0001.pt", "epoch-0002.pt", "last.pt"]
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert state["state"]["epoch"] == 2 and state["state"]["global_step"] == 2 * per_epoch
    assert (
        state["model_spec"]["width"] == 4
        and state["stats"]["mean"] == json.loads((train_shards / "manifests" / "stats.json").read_text())["mean"]
    )
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    assert "epoch 2 | loss" in result.stderr
    refused = run(train_command(train_shards, out, "--epochs", "2"))  # same folder without --resume
    assert refused.returncode == 1 and "--resume" in refused.stderr


def test_resume_after_sigkill_matches_an_uninterrupted_run(train_shards: Path, tmp_path: Path) -> None:
    args = ("--epochs", "2", "--workers", "2", "--ckpt-every", "1", "--audit")
    whole = tmp_path / "whole"
    assert run(train_command(train_shards, whole, *args)).returncode == 0
    interrupted = tmp_path / "interrupted"
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        train_command(train_shards, interrupted, *args),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = interrupted / "checkpoints" / "last.pt"
    killed_at = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists():
            progress = torch.load(last, weights_only=False)["state"]
            if progress["step_in_epoch"] >= 2:  # mid-epoch, after at least one checkpoint
                os.killpg(process.pid, signal.SIGKILL)
                killed_at = progress
                break
        time.sleep(0.02)
    process.wait()
    assert killed_at is not None, "the run ended before it could be killed mid-epoch"
    resumed = run(train_command(train_shards, interrupted, *args, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at epoch" in resumed.stderr
    expected, got = audit(whole), audit(interrupted)
    assert got[-1]["epoch"] == expected[-1]["epoch"] == 1
    assert got[-1]["global_step"] == expected[-1]["global_step"]  # no lost or repeated steps
    assert got[-1]["weights_sum"] == pytest.approx(expected[-1]["weights_sum"], rel=1e-9)
    assert got[-1]["weights_abs_sum"] == pytest.approx(expected[-1]["weights_abs_sum"], rel=1e-9)
    final = records(interrupted, "epoch")[-1]
    assert final["train_loss"] == pytest.approx(records(whole, "epoch")[-1]["train_loss"], rel=1e-6)
    # the records the killed run wrote past its checkpoint were dropped, not repeated
    assert [s["step"] for s in records(interrupted, "step")] == [s["step"] for s in records(whole, "step")]
    assert [e["epoch"] for e in records(interrupted, "epoch")] == [0, 1]


def test_torchrun_two_ranks_split_samples_and_agree_on_weights(train_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = torchrun_command(
        "trainer.cli",
        *train_command(train_shards, out, "--epochs", "2", "--workers", "1", "--audit")[3:],
    )
    result = run(command, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = audit(out, 0), audit(out, 1)
    assert len(rank0) == len(rank1) == 2
    for first, second in zip(rank0, rank1, strict=True):
        assert first["steps"] == second["steps"] > 0  # equal step counts, no hang
        assert not set(first["keys"]) & set(second["keys"])  # disjoint samples
        assert len(set(first["keys"])) == len(first["keys"])  # nothing read twice in an epoch
        assert first["weights_sum"] == pytest.approx(second["weights_sum"], rel=1e-12)
        assert first["weights_abs_sum"] == pytest.approx(second["weights_abs_sum"], rel=1e-12)
    assert "2 process(es)" in result.stderr


def test_cross_entropy_stage_starts_from_contrastive_weights(train_shards: Path, tmp_path: Path) -> None:
    first = tmp_path / "contrastive"
    assert run(train_command(train_shards, first, "--epochs", "1", "--workers", "1")).returncode == 0
    second = tmp_path / "ce"
    result = run(
        train_command(
            train_shards,
            second,
            "--epochs",
            "1",
            "--workers",
            "1",
            "--objective",
            "ce",
            "--init-from",
            str(first / "checkpoints" / "last.pt"),
        )
    )
    assert result.returncode == 0, result.stderr[-3000:]
    epoch = records(second, "epoch")[-1]
    assert epoch["objective"] == "ce" and epoch["train_loss"] > 0 and epoch["val_acc_easy"] is not None
    start = torch.load(first / "checkpoints" / "last.pt", weights_only=False)["model"]
    end = torch.load(second / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert {"head.layers.0.weight", "head.layers.2.weight"} <= set(end)  # the (512, 2) FC layers
    assert not any(k.startswith("head.") for k in start)
    moved = [k for k in start if not torch.equal(start[k], end[k]) and start[k].dtype.is_floating_point]
    assert moved  # fine-tuned end to end, starting from the contrastive weights
