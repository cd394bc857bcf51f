"""Shared fixtures: the real clips from ../shared/data and a runner for the console scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CANDIDATES = [Path(p) for p in (os.environ.get("AVTS_SHARED_DATA"), REPO.parent / "shared" / "data",
                                         "/work/shared/data") if p]
SHARED_DATA = next((p for p in SHARED_CANDIDATES if (p / "real_clips").is_dir()), SHARED_CANDIDATES[0])


@pytest.fixture(scope="session")
def real_clips() -> Path:
    """The folder of real video clips (never modified)."""
    folder = SHARED_DATA / "real_clips"
    if not folder.is_dir():
        pytest.skip(f"real clips not found at {folder} (set AVTS_SHARED_DATA)")
    return folder


def run_cli(module: str, *args: str, timeout: float = 600, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` and return the finished process (output captured as text)."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, "CI": "true", **(env or {})})


def cut_clips(real_clips: Path, out: Path, seconds: float = 4.0, per_file: int = 3) -> list[Path]:
    """Short stream-copied cuts of the real clips that have audio and are long enough (distinct files/keys)."""
    import av

    out.mkdir(parents=True, exist_ok=True)
    made = []
    for source in sorted(real_clips.iterdir()):
        try:
            with av.open(str(source)) as container:
                has_both = container.streams.audio and container.streams.video
                duration = (container.duration or 0) / 1e6
        except av.FFmpegError:
            continue
        if not has_both or duration < seconds * per_file + 1 or source.name.startswith("imageio_cockatoo"):
            continue
        for index in range(per_file):
            target = out / f"{source.stem}_cut{index}.mp4"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(index * seconds), "-i", str(source), "-t",
                            str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(target)],
                           check=True)
            made.append(target)
    return made


@pytest.fixture(scope="session")
def train_shards(real_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards ingested from 4-s cuts of the real clips: ``<root>/shards`` and ``<root>/manifests``."""
    root = tmp_path_factory.mktemp("train_data")
    cut_clips(real_clips, root / "clips")
    result = run_cli("pipeline.cli", "--src", str(root / "clips"), "--out", str(root / "shards"), "--workers", "2",
                     "--engine", "processes", "--shard-size", "2", "--val-fraction", "0.25")
    assert result.returncode == 0, result.stderr
    return root
