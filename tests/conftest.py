"""Shared fixtures: synthetic videos and shards made here, the optional real clips, a runner for the CLIs.

Nothing outside the repository is needed: the training data is made with `avts-synth` and `avts-ingest`.
The real clips of ``../shared/data`` (or ``$AVTS_SHARED_DATA``) are used by the tests that ask for them when
that folder exists; those tests are skipped, saying so, when it does not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVTS_SHARED_DATA") or REPO.parent / "shared" / "data")

# A test run started in the background (`nohup`, `command &` in a script) inherits SIGINT ignored, and Python then
# leaves it ignored, so the Ctrl-C tests would see their interrupt vanish. Python's own handler here makes it
# arrive, in this process and in the commands the tests start (exec turns a caught signal back to the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def real_clips() -> Path:
    """The folder of real video clips (never modified)."""
    folder = SHARED_DATA / "real_clips"
    if not folder.is_dir():
        pytest.skip(
            f"optional real clips not found at {folder} (set AVTS_SHARED_DATA to a folder holding "
            "real_clips/ to run this test)"
        )
    return folder


def run_cli(
    module: str, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` and return the finished process (output captured as text)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "CI": "true", **(env or {})},
    )


def ingest_with_pool(src: Path, out: Path, *flags: str, workers: int = 2) -> None:
    """``avts-ingest --src SRC --out OUT`` on the local process pool with ``flags``; fails the test if it fails."""
    result = run_cli(
        "pipeline.cli", "--src", str(src), "--out", str(out), "--workers", str(workers), "--engine", "processes", *flags
    )
    assert result.returncode == 0, result.stderr


def torchrun_command(module: str, *args: str, processes: int = 2) -> list[str]:
    """``python -m torch.distributed.run --standalone`` starting ``processes`` ranks of ``python -m module args``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        "-m",
        module,
        *args,
    ]


def make_av_clip(
    target: Path,
    seconds: float,
    *,
    width: int = 454,
    height: int = 256,
    fps: str = "25",
    sample_rate: int = 16000,
    channels: int = 1,
    seed: int = 0,
    extra: tuple[str, ...] = (),
) -> Path:
    """A camera-like test clip made with the ffmpeg command line: moving test pattern (H.264) and a loud,
    varying sound (AAC: a tone that changes pitch every second over noise), different for each ``seed``."""
    pitch = 220 + 40 * (seed % 17)
    video = f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"
    audio = (
        f"aevalsrc='0.4*sin(2*PI*({pitch}+60*mod(floor(t)+{seed},5))*t)+0.05*(random(0)-0.5)':"
        f"s={sample_rate}:d={seconds}"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
            video,
            "-f",
            "lavfi",
            "-i",
            audio,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            str(channels),
            *extra,
            "-shortest",
            str(target),
        ],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture(scope="session")
def synth_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 `avts-synth` videos of 4 s at 64 px (events in picture and sound at the same random times)."""
    from pipeline.synth import SynthConfig, generate

    folder = tmp_path_factory.mktemp("synth_videos")
    generate(SynthConfig(out=folder, videos=24, duration=4.0, size=64, seed=3, workers=2))
    return folder


@pytest.fixture(scope="session")
def train_shards(synth_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards ingested from :func:`synth_videos`: ``<root>/shards`` and ``<root>/manifests``."""
    root = tmp_path_factory.mktemp("train_data")
    ingest_with_pool(synth_videos, root / "shards", "--shard-size", "2", "--val-fraction", "0.25", "--short-side", "64")
    return root
