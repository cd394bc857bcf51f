"""avts-train under hostile conditions: a NaN sample, a corrupt video member, no steps, a damaged checkpoint.

Each case is the input that broke an earlier version: one all-NaN ``.fbank.npy`` turned 702,688 weights NaN
and was saved over ``last.pt`` with exit 0; a batch larger than the data "trained" zero steps and exited 0;
``--resume`` without a checkpoint started afresh silently; a truncated ``last.pt`` gave a raw traceback
while an intact epoch checkpoint sat beside it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

import trainer.train
from avts.folder_lock import hold
from tests.conftest import REPO
from tests.test_train import records, run, tiny_arguments, train_command
from trainer.cli import main as train_main
from trainer.cli import parse_args as train_parse_args
from trainer.downstream.sync_cli import parse_args as sync_parse_args
from trainer.finetune_cli import parse_args as finetune_parse_args
from trainer.metrics import MetricsLog
from trainer.train import RUN_LOCK, epoch_line

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def rewrite_member(shard: Path, suffix: str, change: callable) -> str:
    """Rewrite the first member of ``shard`` ending in ``suffix`` with ``change(bytes)``; returns its key."""
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar.getmembers()]
    target = next(info for info, _ in members if info.name.endswith(suffix))
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if info is target:
                data = change(data)
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target.name.split(".", 1)[0]


def nan_fbank(data: bytes) -> bytes:
    array = np.load(io.BytesIO(data))
    buffer = io.BytesIO()
    np.save(buffer, np.full_like(array, np.nan))
    return buffer.getvalue()


@pytest.fixture
def damaged(train_shards: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic shards (and manifests) to damage."""
    root = tmp_path / "data"
    shutil.copytree(train_shards, root)
    return root


def test_an_all_nan_sample_is_skipped_and_named_and_weights_stay_finite(damaged: Path, tmp_path: Path) -> None:
    shard = damaged / "shards" / "0000.tar"
    key = rewrite_member(shard, ".fbank.npy", nan_fbank)
    out = tmp_path / "run"
    result = run(train_command(damaged, out, "--epochs", "1", "--workers", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    stderr = " ".join(result.stderr.split())
    assert f"skipped sample '{key}' of shard '{shard}'" in stderr and "NaN" in stderr
    weights = torch.load(out / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(torch.isfinite(value).all() for value in weights.values() if value.is_floating_point())
    assert np.isfinite(records(out, "epoch")[0]["train_loss"])


def test_a_corrupt_video_member_is_skipped_naming_key_and_shard(damaged: Path, tmp_path: Path) -> None:
    shard = damaged / "shards" / "0001.tar"
    key = rewrite_member(shard, ".mp4", lambda data: data[:64] + bytes(len(data) - 64))
    result = run(train_command(damaged, tmp_path / "run", "--epochs", "1", "--workers", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipped sample '{key}' of shard '{shard}'" in " ".join(result.stderr.split())


def test_a_batch_larger_than_the_data_is_an_error_not_a_silent_success(train_shards: Path, tmp_path: Path) -> None:
    result = run(train_command(train_shards, tmp_path / "run", "--epochs", "1", "--workers", "1", "--batch-size", "64"))
    assert result.returncode == 1
    assert "had no training step" in " ".join(result.stderr.split())
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_resume_without_a_checkpoint_says_so_and_starts(train_shards: Path, tmp_path: Path) -> None:
    result = run(train_command(train_shards, tmp_path / "run", "--epochs", "1", "--workers", "1", "--resume"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--resume: no checkpoint in" in " ".join(result.stderr.split())
    assert [e["epoch"] for e in records(tmp_path / "run", "epoch")] == [0]


def test_a_truncated_last_checkpoint_falls_back_to_the_newest_epoch_one(train_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run(train_command(train_shards, out, "--epochs", "2", "--workers", "1")).returncode == 0
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated in place
    result = run(train_command(train_shards, out, "--epochs", "3", "--workers", "1", "--resume"))
    assert result.returncode == 0, result.stderr[-3000:]
    stderr = " ".join(result.stderr.split())
    assert "last.pt is not a readable checkpoint" in stderr
    assert "resuming from epoch-0002.pt instead of last.pt" in stderr
    assert [e["epoch"] for e in records(out, "epoch")] == [0, 1, 2]
    assert torch.load(last, weights_only=False)["state"]["epoch"] == 3


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_says_where_the_checkpoints_are_and_resume_goes_on(
    train_shards: Path, tmp_path: Path, stop: str
) -> None:
    """Ctrl-C (SIGINT to the process group) or SIGTERM to the main process (``kill``, a scheduler's preemption):
    one line, 130, and an immediate --resume goes on. SIGTERM used to end the run with 143 and no word, and a
    data loader worker that outlived it for ~7 s held the run's lock, so the resume was refused."""
    out = tmp_path / "run"
    command = train_command(train_shards, out, "--epochs", "3", "--workers", "1")
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "epoch-0001.pt").exists() and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.05)
        if stop == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole process group
        else:
            os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert " ".join(stderr.split()).endswith(
        f"avts-train: interrupted; checkpoints so far are in {out / 'checkpoints'}; rerun the same command with "
        "--resume to go on from the last one"
    )
    result = run([*command, "--resume"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert [e["epoch"] for e in records(out, "epoch")] == [0, 1, 2]


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_stop_next_to_the_epoch_checkpoint_keeps_every_epoch_record_once(
    moment: str, train_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that landed after ``epoch-0001.pt`` was saved but before epoch 1's record was written lost that
    record for good: the resumed run started at epoch 2 (CI, test_ctrl_c_says_where_the_checkpoints_are...)."""
    out = tmp_path / "run"
    real_save = trainer.train.save_checkpoint

    def stopped_at_the_first_epoch_end(folder: Path, content: dict, epoch_end: int | None = None, **kw: object) -> Path:
        if epoch_end == 1 and moment == "before":
            raise KeyboardInterrupt
        saved = real_save(folder, content, epoch_end, **kw)
        if epoch_end == 1:
            raise KeyboardInterrupt
        return saved

    arguments = tiny_arguments(train_shards, out)
    arguments += ["--epochs", "2", "--workers", "0"]
    with monkeypatch.context() as patch, contextlib.redirect_stderr(io.StringIO()):
        patch.setattr(trainer.train, "save_checkpoint", stopped_at_the_first_epoch_end)
        assert train_main(arguments) == 130
    with contextlib.redirect_stderr(io.StringIO()):
        assert train_main([*arguments, "--resume"]) == 0
    assert [e["epoch"] for e in records(out, "epoch")] == [0, 1]


def test_a_metrics_line_cut_short_by_a_full_disk_is_left_out_and_dropped_on_resume(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.write("step", step=1, loss=0.5)
    log.write("epoch", epoch=0, step=1, train_loss=0.5)
    with log.path.open("a") as handle:
        handle.write('{"kind": "step", "step": 2, "lo')  # what a disk that filled mid-append leaves
    assert [r["kind"] for r in log.read()] == ["step", "epoch"]
    log.keep_until(global_step=1, epochs_done=1)
    log.write("step", step=2, loss=0.4)
    assert [(r["kind"], r["step"]) for r in log.read()] == [("step", 1), ("epoch", 1), ("step", 2)]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ckpt-every", "-5"], "--ckpt-every must be ≥ 0"),  # was accepted: a checkpoint after every step
        (["--epochs", "0"], "--epochs must be ≥ 1"),
        (["--keep-checkpoints", "0"], "--keep-checkpoints must be ≥ 1"),
    ],
)
def test_impossible_option_values_are_usage_errors(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        train_main(["--shards", str(tmp_path), "--out", str(tmp_path / "run"), *flags])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_refuses_settings_that_differ_from_the_runs_and_takes_those_that_may(
    train_shards: Path, tmp_path: Path
) -> None:
    """``--resume --lr 0.5`` went on at the old learning rate (the optimizer's saved one) without a word."""
    out = tmp_path / "run"
    arguments = tiny_arguments(train_shards, out)
    with contextlib.redirect_stderr(io.StringIO()):
        assert train_main([*arguments, "--epochs", "1", "--workers", "0", "--lr", "0.01"]) == 0
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        status = train_main(
            [*arguments, "--epochs", "2", "--workers", "0", "--lr", "0.5", "--margin", "0.5", "--resume"]
        )
    assert status == 1
    said = " ".join(messages.getvalue().split())
    assert "--lr 0.5 (the run's: 0.01); --margin 0.5 (the run's: 0.99)" in said
    assert said.endswith("Pass the run's values, or start a new run in another --out")
    assert [e["epoch"] for e in records(out, "epoch")] == [0]
    with contextlib.redirect_stderr(io.StringIO()):  # more epochs, other loader workers: the same run
        assert train_main([*arguments, "--epochs", "2", "--workers", "1", "--lr", "0.01", "--resume"]) == 0
    assert [e["epoch"] for e in records(out, "epoch")] == [0, 1]


def test_ctrl_c_while_the_curves_are_drawn_lets_them_finish_then_stops_with_130(
    train_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI: a Ctrl-C that landed inside matplotlib's C++ transforms came out as ``TypeError: incompatible function
    arguments``: a traceback and exit status 1 instead of the one-line message and 130."""
    out = tmp_path / "run"
    real_plot = trainer.train.plot_run

    def interrupted_while_drawing(run_dir: Path) -> list[Path]:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C as the curves start to be drawn
        return real_plot(run_dir)

    arguments = tiny_arguments(train_shards, out)
    arguments += ["--epochs", "2", "--workers", "0"]
    with monkeypatch.context() as patch, contextlib.redirect_stderr(io.StringIO()):
        patch.setattr(trainer.train, "plot_run", interrupted_while_drawing)
        assert train_main(arguments) == 130
    assert matplotlib.image.imread(out / "loss.png").ndim == 3  # drawn whole before the run stopped
    with contextlib.redirect_stderr(io.StringIO()):
        assert train_main([*arguments, "--resume"]) == 0
    assert [e["epoch"] for e in records(out, "epoch")] == [0, 1]


def test_a_second_run_into_the_same_folder_is_refused(train_shards: Path, tmp_path: Path) -> None:
    """Two runs started at once into a new --out both "succeeded", interleaving metrics and checkpoints."""
    out = tmp_path / "run"
    with hold(out, RUN_LOCK, "avts-train", "choose another --out"):  # what a running job holds
        result = run(train_command(train_shards, out, "--epochs", "1", "--workers", "1"))
    assert result.returncode == 1
    assert f"avts-train: another avts-train (pid {os.getpid()}) is writing {out}; wait for it to finish, or " in (
        " ".join(result.stderr.split())
    )
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()
    assert run(train_command(train_shards, out, "--epochs", "1", "--workers", "1")).returncode == 0


def test_a_full_disk_is_a_clear_message_and_the_saved_checkpoint_stays(
    train_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills while a checkpoint is written gave a shutil/sendfile ENOSPC traceback."""
    out = tmp_path / "run"
    real_save = trainer.train.save_checkpoint
    saves = []

    def fills_up_on_the_second_save(folder: Path, *args: object, **kwargs: object) -> Path:
        saves.append(folder)
        if len(saves) == 2:  # as shutil reports it, copying last.pt to its epoch copy
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "last.pt"), str(folder / ".x.tmp-1"))
        return real_save(folder, *args, **kwargs)

    monkeypatch.setattr(trainer.train, "save_checkpoint", fills_up_on_the_second_save)
    messages = io.StringIO()
    arguments = tiny_arguments(train_shards, out)
    with contextlib.redirect_stderr(messages):
        status = train_main([*arguments, "--epochs", "2", "--workers", "0"])
    assert status == 1
    assert " ".join(messages.getvalue().split()).endswith(
        f"avts-train: no space left on device writing in {out / 'checkpoints'}: free some space and rerun the "
        "same command with --resume; the checkpoints already saved are intact"
    )
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["state"]["epoch"] == 1


def test_no_readable_checkpoint_is_a_clear_error(train_shards: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.pt").write_bytes(b"not a checkpoint")
    result = run(train_command(train_shards, tmp_path / "run", "--epochs", "1", "--resume"))
    assert result.returncode == 1
    assert "none of the checkpoints" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_init_from_a_checkpoint_of_another_architecture_is_a_clear_error(train_shards: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert run(train_command(train_shards, first, "--epochs", "1", "--workers", "1")).returncode == 0
    result = run(
        train_command(
            train_shards,
            tmp_path / "second",
            "--epochs",
            "1",
            "--workers",
            "1",
            "--width",
            "8",
            "--init-from",
            str(first / "checkpoints" / "last.pt"),
        )
    )
    assert result.returncode == 1
    assert "holds weights of another shape" in " ".join(result.stderr.split())
    assert json.loads((first / "config.json").read_text())["width"] == 4


def test_an_epoch_without_validation_accuracy_says_why() -> None:
    """One validation video gave no pairs: the accuracy was silently absent from every epoch line."""
    shown = ("stage", "val_acc_easy", "val_acc_mixed")
    record = {"epoch": 0, "train_loss": 0.5, "lr": 0.01, "stage": 0, "val_acc_easy": None, "val_pairs_easy": 0.0}
    assert epoch_line(record, shown) == (
        "epoch 1 | loss 0.5000 | lr 0.01 | stage 0 | no val accuracy: 0 validation pairs, too few validation "
        "videos for two halves (ingest with a larger --val-fraction)"
    )
    measured = {**record, "val_acc_easy": 0.9, "val_pairs_easy": 40.0}
    assert epoch_line(measured, shown) == "epoch 1 | loss 0.5000 | lr 0.01 | stage 0 | val_acc_easy 0.900"
    without_validation = {"epoch": 1, "train_loss": 0.25, "lr": 0.001, "stage": 1}  # no val shards at all
    assert epoch_line(without_validation, shown) == "epoch 2 | loss 0.2500 | lr 0.001 | stage 1"


@pytest.mark.parametrize(
    ("parse", "flags"),
    [
        (train_parse_args, ["--shards", "shards", "--out", "s3://bucket/run"]),
        (finetune_parse_args, ["--shards", "shards", "--init", "scratch", "--out", "gs://bucket/run"]),
        (sync_parse_args, ["clip.mp4", "--checkpoint", "s3://bucket/last.pt"]),
    ],
)
def test_a_url_where_a_local_path_is_needed_is_a_usage_error(
    parse: callable,
    flags: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``avts-train --out s3://bucket/run`` trained into a local folder named ``s3:`` and said ``done``."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        parse(flags)
    assert stopped.value.code == 2
    url = next(flag for flag in flags if "://" in flag)
    assert f"{url!r} is a URL: this option takes a local (or mounted) path" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_hard_negatives_that_cannot_be_made_are_said_and_counted(train_shards: Path, tmp_path: Path) -> None:
    """`--hard-gap 100 --curriculum 0:hard=1` trained on easy negatives only while metrics.jsonl said
    `mix hard=1.0`: the sampler's fallback was silent. Now each step record has the share of negatives that
    were hard, and a warning says it once."""
    out = tmp_path / "run"
    command = train_command(train_shards, out, "--epochs", "1", "--workers", "0", "--log-every", "1")
    result = run([*command, "--hard-gap", "100", "--curriculum", "0:hard=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    said = " ".join(result.stderr.split())
    assert said.count("UnmetCurriculumWarning") == 1 and "asks for 100% hard negatives, but only 0%" in said
    steps = records(out, "step")
    assert steps and all(step["neg_hard_share"] == 0.0 for step in steps)
    possible = run(
        [
            *train_command(train_shards, tmp_path / "ok", "--epochs", "1", "--workers", "0", "--log-every", "1"),
            "--curriculum",
            "0:hard=1",
        ]
    )
    assert possible.returncode == 0 and "UnmetCurriculumWarning" not in possible.stderr
    assert all(step["neg_hard_share"] > 0.5 for step in records(tmp_path / "ok", "step"))
