"""The distributor and the local process engine, in process: per-video work, shard assembly, worker deaths; which
engine a run takes.

A worker that dies takes exactly the task it held: that task is retried on a fresh worker (and fails for
good after ``retries`` more deaths) while the other tasks complete; shards are assembled from their videos'
pieces in plan order whatever order the videos finish in.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avts.schema import Sample, SampleMeta
from pipeline.config import EncodeSettings, IngestConfig, ShardOutput
from pipeline.discover import ShardJob, VideoItem
from pipeline.distributor import ShardDone, VideoDone, distribute
from pipeline.manifest import OK, ShardPart, ShardRecord, video_row
from pipeline.process_engine import ProcessEngine, WorkerDied
from pipeline.tasks import VideoReport
from pipeline.writer import end_of_archive, sample_tar_bytes
from tests.conftest import REPO, make_av_clip

SETTINGS = EncodeSettings(
    short_side=64, crf=23, preset="ultrafast", mp3=False, mp3_bitrate=64000, min_duration=1.0, threads=1
)


def crash_once(marker: str, value: int) -> int:
    """Kill the worker the first time (leaving ``marker``), succeed the second."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(3)
    return value * 10


def always_crash() -> None:
    """Kill the worker every time."""
    os._exit(4)


def square(value: int) -> int:
    return value * value


def fail_cleanly() -> None:
    raise ValueError("a task's own error")


@pytest.fixture
def engine(tmp_path: Path) -> ProcessEngine:
    engine = ProcessEngine(
        2, SETTINGS, ShardOutput(tmp_path / "out", tmp_path / "manifests"), retries=2, env={"OMP_NUM_THREADS": "1"}
    )
    yield engine
    engine.close()


def finish(engine: ProcessEngine, handles: list[Hashable]) -> dict[Hashable, Any]:
    """Wait for every handle; map each to its value or its exception."""
    outcomes: dict[Hashable, Any] = {}
    pending = list(handles)
    while pending:
        for handle in engine.wait(pending):
            pending.remove(handle)
            try:
                outcomes[handle] = engine._take(handle)
            except Exception as error:
                outcomes[handle] = error
    return outcomes


def test_a_worker_death_retries_only_the_task_it_held(engine: ProcessEngine, tmp_path: Path) -> None:
    marker = str(tmp_path / "crashed-once")
    crashing = engine.submit(crash_once, (marker, 7))
    others = [engine.submit(square, (n,)) for n in range(6)]
    outcomes = finish(engine, [crashing, *others])
    assert outcomes[crashing] == 70 and Path(marker).exists()
    assert [outcomes[h] for h in others] == [0, 1, 4, 9, 16, 25]
    assert all(worker.process.is_alive() for worker in engine._workers)  # the dead one was replaced


def test_a_task_that_always_kills_its_worker_fails_after_the_retries(engine: ProcessEngine) -> None:
    doomed = engine.submit(always_crash, ())
    fine = engine.submit(square, (3,))
    own_error = engine.submit(fail_cleanly, ())
    outcomes = finish(engine, [doomed, fine, own_error])
    assert isinstance(outcomes[doomed], WorkerDied)
    assert "exit code 4" in str(outcomes[doomed]) and "3 attempts" in str(outcomes[doomed])  # 1 + 2 retries
    assert outcomes[fine] == 9
    assert isinstance(outcomes[own_error], ValueError)  # not retried: the task failed, not the worker


def item(index: int) -> VideoItem:
    return VideoItem(f"video{index}", Path(f"/nowhere/video{index}.mp4"), f"video{index}.mp4", None, "train", index)


class ReversedEngine:
    """Runs tasks in this process and finishes them in reverse order of submission."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.results: dict[int, Any] = {}
        self.written: dict[str, list[Any]] = {}

    def submit_video(self, video: VideoItem) -> Hashable:
        handle = len(self.results)
        row = video_row(video, OK)
        self.results[handle] = (VideoReport(row, None), f"piece of {video.key}")
        self.pending.append(handle)
        return handle

    def video_outcome(self, handle: Hashable) -> tuple[VideoReport, Any]:
        return self.results[handle]

    def submit_shard(self, job: ShardJob, reports: list[VideoReport], pieces: list[Any]) -> Hashable:
        handle = len(self.results)
        self.written[job.name] = pieces
        self.results[handle] = ShardPart(
            ShardRecord(job.name, job.split, len(pieces), 0, "", "here"), [r.row for r in reports]
        )
        self.pending.append(handle)
        return handle

    def shard_outcome(self, handle: Hashable) -> ShardPart:
        return self.results[handle]

    def wait(self, handles: list[Hashable]) -> list[Hashable]:
        ready = max(h for h in handles)
        return [ready]

    def close(self) -> None:
        pass


def test_shards_get_their_pieces_in_plan_order_whatever_the_finishing_order() -> None:
    jobs = [ShardJob("0000.tar", "train", (item(0), item(1), item(2))), ShardJob("0001.tar", "train", (item(3),))]
    engine = ReversedEngine()
    events = list(distribute(jobs, engine, in_flight=2))
    assert engine.written == {
        "0000.tar": ["piece of video0", "piece of video1", "piece of video2"],
        "0001.tar": ["piece of video3"],
    }
    # two in flight, the newest finishing first: video0 is the last to finish, after shard 0001 was complete
    assert [e.report.row.key for e in events if isinstance(e, VideoDone)] == ["video1", "video2", "video3", "video0"]
    parts = sorted((e.part for e in events if isinstance(e, ShardDone)), key=lambda part: part.record.shard)
    assert [p.record.shard for p in parts] == ["0000.tar", "0001.tar"]
    assert [[row.key for row in p.videos] for p in parts] == [["video0", "video1", "video2"], ["video3"]]


def sample(key: str, frames: int) -> Sample:
    meta = SampleMeta(
        key=key,
        source=f"{key}.mp4",
        label=None,
        duration_s=frames / 25,
        source_start_s=0.0,
        frames=frames,
        fps=25.0,
        width=64,
        height=64,
        stored_width=64,
        stored_height=64,
        audio_sample_rate=16000,
        audio_channels=1,
        audio_pad_s=0.0,
        mp3=False,
    )
    fbank = np.arange(4 * frames * 40, dtype=np.float16).reshape(4 * frames, 40)
    return Sample(key, bytes(range(256)) * frames, fbank, meta)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_assembled_pieces_are_exactly_what_tarfile_writes(count: int) -> None:
    samples = [sample(f"k{i}-{'x' * 95}", 3 + i) for i in range(count)]  # long names need PAX headers
    assembled = b"".join(sample_tar_bytes(s) for s in samples)
    assembled += end_of_archive(len(assembled))
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for piece in (sample_tar_bytes(s) for s in samples):
            with tarfile.open(fileobj=io.BytesIO(piece + end_of_archive(len(piece)))) as one:
                for member in one.getmembers():
                    tar.addfile(member, one.extractfile(member))
    assert assembled == reference.getvalue()
    assert len(assembled) % tarfile.RECORDSIZE == 0


@pytest.mark.parametrize(
    ("engine", "address", "ray_address_variable", "expected"),
    [
        ("auto", None, None, "process pool, 2 workers"),  # one machine: Ray's start-up would buy nothing
        ("auto", "10.0.0.1:6379", None, "Ray cluster at 10.0.0.1:6379"),
        ("auto", None, "10.0.0.2:6379", "Ray cluster at 10.0.0.2:6379"),  # as inside a Ray job
        ("ray", None, None, "embedded local Ray, 2 workers"),
        ("processes", None, "10.0.0.2:6379", "process pool, 2 workers"),  # asked for: the variable does not win
    ],
)
def test_the_engine_is_ray_only_when_asked_or_a_cluster_is_named(
    engine: str,
    address: str | None,
    ray_address_variable: str | None,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if ray_address_variable:
        monkeypatch.setenv("RAY_ADDRESS", ray_address_variable)
    config = IngestConfig(src=tmp_path, out=str(tmp_path / "shards"), workers=2, engine=engine, address=address)
    assert config.engine_description() == expected
    assert config.uses_ray == expected.startswith(("Ray", "embedded"))


def test_an_address_with_the_process_pool_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--address joins a Ray cluster"):
        IngestConfig(src=tmp_path, out=str(tmp_path / "shards"), engine="processes", address="auto")


def test_a_run_at_default_flags_on_one_machine_never_starts_ray_and_says_where_it_ran(tmp_path: Path) -> None:
    for index in range(3):
        make_av_clip(tmp_path / "src" / f"clip{index}.mp4", 3.0, width=96, height=64, seed=index)
    run = f"""
import sys
from pipeline.cli import main
status = main(["--src", {str(tmp_path / "src")!r}, "--out", {str(tmp_path / "shards")!r}, "--workers", "2",
               "--short-side", "64"])
print("status", status, "ray imported", "ray" in sys.modules, "pandas imported", "pandas" in sys.modules)
"""
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", run], cwd=REPO, env={**env, "CI": "true"}, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["status", "0", "ray", "imported", "False", "pandas", "imported", "False"], (
        done.stderr
    )
    assert "process pool, 2 workers" in done.stderr
    assert len(list((tmp_path / "shards").glob("*.tar"))) >= 1


@pytest.mark.parametrize(
    ("modules", "not_imported"),
    [
        # what every spawned worker imports again as its __mp_main__ (the command's own module): the flags only
        (["pipeline.cli"], ["pandas", "pyarrow", "av", "scipy", "ray"]),
        # what a worker needs to run its tasks: not scipy (python_speech_features imports it) nor the driver's tables
        (["pipeline.process_engine", "pipeline.transcode"], ["pandas", "pyarrow", "scipy", "python_speech_features"]),
    ],
)
def test_ingest_processes_do_not_import_what_they_do_not_use(modules: list[str], not_imported: list[str]) -> None:
    """Each import is paid at every start of every worker (scipy 0.18 s, pandas 0.3 s here)."""
    code = f"import sys; import {', '.join(modules)}; print(sorted(set({not_imported!r}) & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_the_local_pool_starts_no_more_workers_than_there_are_videos(tmp_path: Path) -> None:
    """--workers 100 for 2 videos started 100 processes (10 s and 2.7 GB here) to do the work of 2."""
    from pipeline.ingest import start_engine

    config = IngestConfig(src=tmp_path, out=str(tmp_path / "shards"), workers=50, engine="processes")
    engine = start_engine(config, videos=2)
    try:
        assert isinstance(engine, ProcessEngine) and len(engine._workers) == 2
    finally:
        engine.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal mask from Linux's /proc")
def test_workers_hold_ctrl_c_back_from_their_first_instruction(engine: ProcessEngine) -> None:
    """Ctrl-C in a run's first half-second printed a traceback per worker (still importing): the workers now
    start with SIGINT blocked, and the driver's own mask is as before."""
    sigint = 1 << (signal.SIGINT - 1)
    for worker in engine._workers:
        status = Path(f"/proc/{worker.process.pid}/status").read_text()
        blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
        assert blocked & sigint
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
