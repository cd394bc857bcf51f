"""The downstream tools under hostile input, each case the one that broke an earlier version.

``avts-features --out`` and ``avts-probe --out`` overwrote the source CSV or the checkpoint with exit 0; a
symlink loop ended a whole `avts-sync` run in a traceback; Ctrl-C gave tracebacks; a checkpoint of NaN weights gave
"results" (accuracy 0.5, offset −0.48 s); ``--range 1e9`` hung; ``--pool 1000x1000`` ate 24 GB; ``--device
banana`` and ``--svm-c 0`` were tracebacks; ``--width 0`` trained nothing or crashed.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import torch

from avts.folder_lock import hold
from avts.stats import FeatureStats, StatsError
from pipeline.synth import SynthConfig, generate
from tests.test_avts_eval import tiny_checkpoint
from trainer.checkpoint import CheckpointError, load_trained
from trainer.cli import parse_args as train_parse_args
from trainer.downstream import sync_cli
from trainer.downstream.avts_eval_cli import parse_args as eval_parse_args
from trainer.downstream.features_cli import parse_args as features_parse_args
from trainer.downstream.probe_cli import parse_args as probe_parse_args
from trainer.downstream.sync import SyncConfig, SyncError, prepare
from trainer.downstream.sync_cli import parse_args as sync_parse_args
from trainer.inspect_cli import main as inspect_main


def usage_error(parse: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line usage error ``parse(argv)`` exits with (status 2)."""
    with pytest.raises(SystemExit) as stopped:
        parse(argv)  # type: ignore[operator]
    assert stopped.value.code == 2
    return " ".join(capsys.readouterr().err.split())


def test_an_out_that_is_an_input_a_folder_or_under_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv, checkpoint, folder, a_file = tmp_path / "esc.csv", tmp_path / "last.pt", tmp_path / "dir", tmp_path / "f"
    for path in (csv, checkpoint, a_file):
        path.write_text("mine")
    folder.mkdir()
    features = ["--checkpoint", str(checkpoint), "--src", str(csv), "--out"]
    said = usage_error(features_parse_args, [*features, str(csv)], capsys)
    assert f"--out must name a .parquet file, not {csv}" in said
    assert "must name a .parquet file" in usage_error(features_parse_args, [*features, str(checkpoint)], capsys)
    said = usage_error(probe_parse_args, ["--meta", str(csv), "--features", "mfcc", "--out", str(csv)], capsys)
    assert f"--out must name a .json file, not {csv}" in said
    said = usage_error(
        eval_parse_args, ["--checkpoint", str(checkpoint), "--shards", "x", "--out", str(folder)], capsys
    )
    assert "--out must name a .json file" in said
    said = usage_error(
        eval_parse_args, ["--checkpoint", str(checkpoint), "--shards", "x", "--out", f"{a_file}/r.json"], capsys
    )
    assert "lies under a file" in said
    said = usage_error(sync_parse_args, [str(csv), "--checkpoint", str(checkpoint), "--out", str(a_file)], capsys)
    assert f"--out {a_file} is a file" in said
    assert [path.read_text() for path in (csv, checkpoint, a_file)] == ["mine"] * 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--features", "avts", "--checkpoint", "c.pt", "--pool", "1000x1000"], "BANDS must be in [1, 20]"),
        (["--features", "mfcc", "--svm-c", "0"], "--svm-c must be a finite number > 0"),
        (["--features", "mfcc", "--svm-c", "nan"], "--svm-c must be a finite number > 0"),
        (["--features", "random", "--subclips", "100000"], "--subclips must be in [1, 100]"),
        (["--features", "random", "--width", "0"], "--width must be ≥ 1"),
        (["--features", "mfcc", "--device", "banana"], "--device must be auto, cpu, cuda or cuda:N, not 'banana'"),
    ],
)
def test_probe_flags_that_cannot_work_are_usage_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in usage_error(probe_parse_args, ["--meta", str(tmp_path / "m.csv"), *argv], capsys)


def test_a_cuda_device_where_there_is_none_and_a_zero_width_model_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--shards", str(tmp_path), "--out", str(tmp_path / "run")]
    if not torch.cuda.is_available():
        said = usage_error(train_parse_args, [*base, "--device", "cuda"], capsys)
        assert "--device cuda: this machine has 0 CUDA device(s); pass --device cpu or auto" in said
    count = torch.cuda.device_count()
    said = usage_error(train_parse_args, [*base, "--device", f"cuda:{count}"], capsys)
    assert f"this machine has {count} CUDA device(s)" in said
    for flag in ("--width", "--embed-dim"):
        assert "must be ≥ 1" in usage_error(train_parse_args, [*base, flag, "0"], capsys)


def test_a_checkpoint_of_nan_weights_is_refused_not_turned_into_results(tmp_path: Path) -> None:
    path = tiny_checkpoint(tmp_path)
    content = torch.load(path, weights_only=False)
    content["model"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in content["model"].items()}
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="not finite"):
        load_trained(path)


def test_a_symlink_loop_is_one_failed_file_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").symlink_to(tmp_path / "b.mp4")
    (tmp_path / "b.mp4").symlink_to(tmp_path / "a.mp4")
    config = SyncConfig(videos=(tmp_path / "a.mp4",), checkpoint=tmp_path / "c.pt", out=tmp_path / "out")
    with pytest.raises(SyncError, match="symbolic links"):
        prepare(tmp_path / "a.mp4", config)


def test_ctrl_c_in_avts_sync_is_one_line_and_status_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    video = generate(SynthConfig(out=tmp_path / "video", videos=1, duration=3.0, size=64, seed=5, workers=1))[0]
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sync_cli, "sync_file", interrupted)
    status = sync_cli.main(
        [str(video), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"), "--device", "cpu"]
    )
    assert status == 130
    said = " ".join(capsys.readouterr().err.split())
    assert "avts-sync: interrupted; sync.json is written at the end" in said and "Traceback" not in said
    assert not os.path.exists(tmp_path / "o" / "sync.json")


def test_inspect_names_a_tar_that_holds_no_samples_and_probe_a_stats_file_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.tar"
    (tmp_path / "a.txt").write_text("not a sample")
    with tarfile.open(junk, "w") as tar:
        tar.add(tmp_path / "a.txt", arcname="a.txt")
    assert inspect_main([str(junk), "--out", str(tmp_path / "x.png")]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert f"{junk}: not an avts-ingest shard" in said and "Traceback" not in said
    with pytest.raises(StatsError, match=r"is not a stats\.json written by avts-ingest"):
        FeatureStats.load(tmp_path / "a.txt")
    assert "--meta must be a CSV file, not a folder" in usage_error(
        probe_parse_args, ["--meta", str(tmp_path), "--features", "mfcc"], capsys
    )
    base = ["--shards", str(tmp_path), "--out", str(tmp_path / "run")]
    assert "--lr-factor must be in (0, 1]" in usage_error(train_parse_args, [*base, "--lr-factor", "0"], capsys)
    assert "--plateau-patience must be ≥ 0" in usage_error(
        train_parse_args, [*base, "--plateau-patience", "-1"], capsys
    )


def test_avts_sync_keeps_to_a_folder_of_its_own_one_run_at_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """avts-sync replaced a user's talk.png and sync.json in --out, and two runs into one folder interleaved."""
    video = generate(SynthConfig(out=tmp_path / "video", videos=1, duration=3.0, size=64, seed=5, workers=1))[0]
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / f"{video.stem}.png").write_text("MINE")
    (mine / "sync.json").write_text("{}")
    argv = [str(video), "--checkpoint", str(checkpoint), "--device", "cpu", "--range", "0.2", "--out"]
    assert sync_cli.main([*argv, str(mine)]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "holds files avts-sync did not write" in said and "give a new or empty folder" in said
    assert (mine / f"{video.stem}.png").read_text() == "MINE" and (mine / "sync.json").read_text() == "{}"
    ours = tmp_path / "ours"
    assert sync_cli.main([*argv, str(ours)]) == 0
    assert sync_cli.main([*argv, str(ours)]) == 0  # a rerun into its own folder
    capsys.readouterr()
    with hold(ours, sync_cli.LOCK, "avts-sync", "give another --out"):
        assert sync_cli.main([*argv, str(ours)]) == 1
    assert "give another --out" in " ".join(capsys.readouterr().err.split())


def test_a_bad_curriculum_and_an_oversized_short_side_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--curriculum garbage` raised ValueError from inside the run, and `avts-sync --short-side 4096` raised the
    ingest settings' ValueError: tracebacks, where every other bad flag is a usage error."""
    base = ["--shards", str(tmp_path), "--out", str(tmp_path / "run")]
    said = usage_error(train_parse_args, [*base, "--curriculum", "garbage"], capsys)
    assert "--curriculum: bad curriculum stage 'garbage'" in said
    video = tmp_path / "v.mp4"
    said = usage_error(sync_cli.parse_args, [str(video), "--checkpoint", "c.pt", "--short-side", "4096"], capsys)
    assert "--short-side must be an even number in [16, 2160]" in said


def test_a_read_only_output_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only --out (a read-only mount) gave `OSError: [Errno 30]` with a traceback from the lock."""
    from avts.folder_lock import FolderLockError

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "open", read_only)
    with (
        pytest.raises(FolderLockError, match=r"cannot write in .*: Read-only file system"),
        hold(tmp_path / "run", ".lock", "avts-train", "pass another --out"),
    ):
        pass
