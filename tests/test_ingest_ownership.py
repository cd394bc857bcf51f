"""avts-ingest and the files around it: nothing deleted that is not ours, one job per output, manifests that
belong to their shards, odd names and folders, no orphans or litter after kills and full disks.

Each case is an input that broke an earlier version (an unrelated ``my_backup.tar`` was deleted; two jobs
into one folder both "succeeded"; a second shard folder overwrote the first one's ``stats.json``; a name
that is not UTF-8 crashed the run; a killed run left its workers running).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

import pipeline.ingest
from pipeline.cli import main
from pipeline.config import IngestConfig
from pipeline.distributor import ShardDone
from pipeline.ingest import IngestError, run_ingest
from pipeline.output_dir import locked
from tests.conftest import REPO, make_av_clip
from trainer.shardlist import default_stats_path

FAST = ["--engine", "processes", "--workers", "1", "--shard-size", "2", "--val-fraction", "0", "--short-side", "64"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("own") / "src"
    for index in range(3):
        make_av_clip(src / f"clip{index}.mp4", 3.0, width=96, height=64, seed=index)
    return src


def ingest(src: Path, out: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the CLI in process; returns its exit status and its messages (as one line)."""
    status = main(["--src", str(src), "--out", str(out), *FAST, *extra])
    return status, " ".join(capsys.readouterr().err.split())


def test_files_it_did_not_write_are_never_deleted(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shards"
    out.mkdir()
    (out / "my_backup.tar").write_bytes(b"precious")
    status, message = ingest(clips, out, capsys=capsys)
    assert status == 1 and "did not write (my_backup.tar)" in message and "--allow-other-files" in message
    assert {p.name for p in out.iterdir()} == {"my_backup.tar", ".avts-ingest.lock"}  # nothing written or removed
    status, message = ingest(clips, out, "--allow-other-files", capsys=capsys)
    assert status == 0, message
    status, message = ingest(clips, out, "--allow-other-files", "--overwrite", capsys=capsys)
    assert status == 0, message
    assert (out / "my_backup.tar").read_bytes() == b"precious"
    assert sorted(p.name for p in out.glob("*.tar")) == ["0000.tar", "0001.tar", "my_backup.tar"]


def test_shard_named_files_of_someone_else_are_refused(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shards"
    out.mkdir()
    (out / "0000.tar").write_bytes(b"someone else's")
    status, message = ingest(clips, out, "--allow-other-files", "--overwrite", capsys=capsys)
    assert status == 1 and "shard-named files that avts-ingest did not write" in message
    assert (out / "0000.tar").read_bytes() == b"someone else's"


def test_a_second_job_on_the_same_output_is_refused(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shards"
    with locked(out):  # what a running job holds
        status, message = ingest(clips, out, capsys=capsys)
    assert status == 1
    assert f"another avts-ingest (pid {os.getpid()}) is writing {out}" in message
    assert not list(out.glob("*.tar"))
    status, message = ingest(clips, out, capsys=capsys)
    assert status == 0, message


def test_an_output_path_that_is_a_file_is_a_clear_message(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "afile"
    a_file.write_bytes(b"not a folder")
    status, message = ingest(clips, a_file, capsys=capsys)  # was a FileExistsError traceback
    assert status == 1 and f"{a_file} is a file, not a folder" in message
    status, message = ingest(clips, a_file / "shards", capsys=capsys)
    assert status == 1 and f"{a_file / 'shards'}: part of this path is a file, not a folder" in message
    status, message = ingest(clips, tmp_path / "shards", "--manifests", str(a_file), capsys=capsys)
    assert status == 1 and f"{a_file} is a file, not a folder" in message
    assert a_file.read_bytes() == b"not a folder"


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--preset", "veryfastt"], "argument --preset: invalid choice: 'veryfastt'"),  # made every video "corrupt"
        (["--manifests", "{out}/"], "--manifests must be another folder than --out"),  # "another avts-ingest (pid" us
    ],
)
def test_options_that_cannot_work_are_refused_before_the_run(
    flags: list[str], said: str, clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shards"
    with pytest.raises(SystemExit) as stopped:
        main(["--src", str(clips), "--out", str(out), *FAST, *(flag.format(out=out) for flag in flags)])
    assert stopped.value.code == 2
    assert said in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_manifests_belong_to_their_shards(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "shards_a", tmp_path / "shards_b"
    assert ingest(clips, first, capsys=capsys)[0] == 0
    stats = (tmp_path / "manifests" / "stats.json").read_bytes()
    status, message = ingest(clips, second, "--short-side", "32", capsys=capsys)  # same default manifests/
    assert status == 1 and "describe the shards in" in message and "another --manifests" in message
    assert (tmp_path / "manifests" / "stats.json").read_bytes() == stats
    # another --manifests does not get around the settings guard: the shards name their manifests
    status, message = ingest(clips, first, "--short-side", "32", "--manifests", str(tmp_path / "other"), capsys=capsys)
    assert status == 1 and "belong to the manifests in" in message
    assert default_stats_path([str(first / "0000.tar")]) == first / "../manifests/stats.json"
    status, _ = ingest(clips, second, "--manifests", str(tmp_path / "manifests_b"), capsys=capsys)
    assert status == 0
    (second / ".avts-shards.json").unlink()  # shards whose marker is gone fall back to ../manifests: not theirs
    with pytest.raises(FileNotFoundError, match="belongs to other shards"):
        default_stats_path([str(second / "0000.tar")])


def test_odd_names_and_folders_are_ingested_or_listed(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.link(clips / "clip0.mp4", src / os.fsdecode(b"caf\xe9.mp4"))  # not UTF-8
    os.link(clips / "clip1.mp4", src / ".hidden.mp4")
    (src / "linked").symlink_to(clips, target_is_directory=True)
    (src / "broken.mp4").symlink_to(tmp_path / "nowhere.mp4")
    out = src / "out"  # the output inside the source: never ingested as input
    for _ in range(2):
        status, message = ingest(src, out, "--allow-other-files", capsys=capsys)
        assert status == 0 and "Traceback" not in message
    videos = pd.read_parquet(tmp_path / "src" / "manifests" / "videos.parquet").set_index("path")
    assert videos.loc["caf\\xe9.mp4", "status"] == "ok"
    assert videos.loc[".hidden.mp4", "status"] == "skipped" and videos.loc[".hidden.mp4", "reason"] == "hidden file"
    assert videos.loc["out", "reason"] == "the output folder"
    assert videos.loc["manifests", "reason"] == "the output folder"
    assert {"linked/clip0.mp4", "linked/clip1.mp4", "linked/clip2.mp4"} <= set(videos.index[videos.status == "ok"])
    assert videos.loc["broken.mp4", "status"] == "failed"
    assert "passed over" in message and "1 hidden file" in message


def test_no_training_video_is_said_out_loud(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, message = ingest(clips, tmp_path / "shards", "--val-fraction", "0.99", capsys=capsys)
    assert status == 0
    assert "no video goes to training" in message and "no stats.json" in message
    assert not (tmp_path / "manifests" / "stats.json").exists()


def test_a_full_disk_is_a_clear_message_and_leaves_no_temporary_files(
    clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "shards"
    out.mkdir()
    (out / ".0007.tar.tmp-0123456789abcdef0123456789abcdef").write_bytes(b"left by a killed worker")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "manifests" / "videos.parquet"))

    monkeypatch.setattr("pipeline.ingest.write_tables", full)
    config = IngestConfig(
        src=clips, out=out, engine="processes", workers=1, shard_size=2, val_fraction=0.0, short_side=64
    )
    with pytest.raises(IngestError, match=r"no space left on device .*videos\.parquet.*rerun"):
        run_ingest(config, Console(file=open(os.devnull, "w")))  # noqa: SIM115
    names = {p.name for p in out.iterdir()} | {p.name for p in (tmp_path / "manifests" / "parts").iterdir()}
    assert not [name for name in names if ".tmp-" in name]
    assert {"0000.tar", "0001.tar"} <= names  # complete shards stay for the rerun


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_cleanly_and_resumes(
    signum: signal.Signals,
    clips: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C, or SIGTERM (``kill``, ``docker stop``, preemption), once the first shard is written: one line
    saying what is kept, status 130, no temporary files, no workers left; the rerun resumes."""
    real_distribute = pipeline.ingest.distribute
    out = tmp_path / "shards"

    def interrupted_after_one_shard(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        for event in real_distribute(*args, **kwargs):  # type: ignore[arg-type]
            yield event
            if isinstance(event, ShardDone):
                os.kill(os.getpid(), signum)  # a real signal, delivered while the run goes on
                time.sleep(5)  # the handler interrupts this

    monkeypatch.setattr(pipeline.ingest, "distribute", interrupted_after_one_shard)
    before = child_pids(os.getpid())
    status, message = ingest(clips, out, capsys=capsys)
    assert status == 130 and message.endswith(
        "avts-ingest: interrupted; complete shards are kept; rerun the same command to resume where it stopped"
    )
    assert "Traceback" not in message
    names = {p.name for p in out.iterdir()} | {p.name for p in (tmp_path / "manifests" / "parts").iterdir()}
    assert not [name for name in names if ".tmp-" in name]
    kept = len(list(out.glob("*.tar")))  # the first shard, and any whose writing had started in a worker
    assert 1 <= kept <= 2
    deadline = time.monotonic() + 10
    while (left := workers(child_pids(os.getpid()) - before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, "workers outlived the interrupted run"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # avts-ingest put back the handler it found
    monkeypatch.setattr(pipeline.ingest, "distribute", real_distribute)
    status, message = ingest(clips, out, capsys=capsys)
    assert status == 0 and f"({kept} kept from an earlier run)" in message
    assert len(list(out.glob("*.tar"))) == 2


def child_pids(parent: int) -> set[int]:
    """Processes whose parent is ``parent`` (from /proc)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                children.add(int(entry.name))
    return children


def workers(pids: set[int]) -> set[int]:
    """The live ones of ``pids``, less multiprocessing's resource tracker (a helper that lives as long as the
    process that started a pool, here pytest)."""
    return {pid for pid in pids if alive(pid) and b"resource_tracker" not in cmdline(pid)}


def cmdline(pid: int) -> bytes:
    """The command line of ``pid`` (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_die_with_a_killed_driver(clips: Path, tmp_path: Path) -> None:
    many = tmp_path / "many"
    for index in range(12):
        make_av_clip(many / f"c{index}.mp4", 3.0, width=96, height=64, seed=index)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "--src",
            str(many),
            "--out",
            str(tmp_path / "shards"),
            "--engine",
            "processes",
            "--workers",
            "2",
        ],
        cwd=REPO,
        env={**os.environ, "CI": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = {
                pid for pid in child_pids(process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
            }
            time.sleep(0.05)
        assert len(workers) == 2, "the pool did not start"
        workers |= child_pids(process.pid)  # and any helper process of multiprocessing
        os.kill(process.pid, signal.SIGKILL)  # the driver alone, not its process group
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "workers outlived their driver"
    finally:
        if process.poll() is None:
            process.kill()
