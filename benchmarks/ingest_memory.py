"""Peak memory of one video's transcode against the video's length: it must stay flat in duration.

Usage (from the repository root)::

    python benchmarks/ingest_memory.py --workdir /tmp/ingest_memory              # 1, 10 and 60 minutes
    python benchmarks/ingest_memory.py --workdir /tmp/ingest_memory --minutes 1 5 --no-write

For each duration a long low-resolution test video is made with the ffmpeg command line (``testsrc2`` 32×32 at
25 fps, H.264; a tone over noise as 44.1 kHz stereo AAC, so the audio goes through the resampler), once, and kept
in ``--workdir``. The per-video transcode (:func:`pipeline.transcode.transcode` with the ingest's default
settings, what one worker does for one file) then runs in a fresh Python subprocess; its peak resident memory is
the ``ru_maxrss`` of that child (``os.wait4``), so nothing of the parent or of earlier runs counts. A child that
only imports the same modules gives the floor. The report is the peak RSS per duration and its slope in MB per
minute of video (between the shortest and the longest duration); it prints a markdown table and writes it to
the ``## Ingest memory`` section of ``--results``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench_results import machine_line, write_section  # noqa: E402

SIZE = 32
SECTION = "Ingest memory"

CHILD = """
import sys, time
from pathlib import Path
from pipeline.config import IngestConfig
from pipeline.discover import VideoItem
from pipeline.transcode import transcode
path = Path(sys.argv[1])
if path.name:
    settings = IngestConfig(src=path.parent).encode_settings()
    item = VideoItem(key="long", path=path, relpath=path.name, label=None, split="train", stats_rank=0)
    started = time.perf_counter()
    done = transcode(item, settings)
    print(done.sample.meta.frames, len(done.sample.video), done.sample.fbank.nbytes, time.perf_counter() - started)
"""


@dataclass(frozen=True)
class Measurement:
    """One child process: its peak RSS and what it did."""

    minutes: float
    peak_rss_mb: float
    wall_s: float
    frames: int
    video_mb: float
    features_mb: float


def make_long_video(path: Path, minutes: float) -> Path:
    """A ``minutes``-long 32×32 25 fps H.264 + 44.1 kHz stereo AAC test video (made once, then reused)."""
    if path.exists():
        return path
    seconds = f"{minutes * 60:g}"
    video = f"testsrc2=size={SIZE}x{SIZE}:rate=25:duration={seconds}"
    audio = f"sine=frequency=330:sample_rate=44100:duration={seconds},volume=0.5"
    noise = f"anoisesrc=color=pink:sample_rate=44100:amplitude=0.05:duration={seconds}"
    tmp = path.with_suffix(".tmp.mp4")
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
            "-f",
            "lavfi",
            "-i",
            noise,
            "-filter_complex",
            "[1:a][2:a]amix=inputs=2[a]",
            "-map",
            "0:v",
            "-map",
            "[a]",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
            str(tmp),
        ],
        check=True,
    )
    tmp.rename(path)
    return path


def run_child(path: Path | None, minutes: float) -> Measurement:
    """Transcode ``path`` (or only import the modules, for ``None``) in a fresh process; its peak RSS."""
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path) if path else ""], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"transcode of {path} failed with exit code {child.returncode}")
    wall = time.perf_counter() - started
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    if path is None:
        return Measurement(0, peak_mb, wall, 0, 0.0, 0.0)
    frames, video_bytes, feature_bytes, _ = output.split()
    return Measurement(minutes, peak_mb, wall, int(frames), int(video_bytes) / 2**20, int(feature_bytes) / 2**20)


def report(floor: Measurement, runs: list[Measurement]) -> str:
    """Markdown: one row per duration, then the slope in MB per minute."""
    lines = [
        "| video | peak RSS (MB) | above the import floor (MB) | stored video (MB) | features (MB) | wall (s) |",
        "|---|---|---|---|---|---|",
        f"| (imports only) | {floor.peak_rss_mb:.0f} | 0 | - | - | {floor.wall_s:.1f} |",
    ]
    for run in runs:
        lines.append(
            f"| {run.minutes:g} min ({run.frames} frames) | {run.peak_rss_mb:.0f} | "
            f"{run.peak_rss_mb - floor.peak_rss_mb:.0f} | {run.video_mb:.1f} | {run.features_mb:.1f} | "
            f"{run.wall_s:.1f} |"
        )
    if len(runs) >= 2:
        first, last = runs[0], runs[-1]
        slope = (last.peak_rss_mb - first.peak_rss_mb) / (last.minutes - first.minutes)
        lines.append("")
        lines.append(
            f"Slope between {first.minutes:g} and {last.minutes:g} min: **{slope:.1f} MB per minute** of "
            "video (what stays in memory by design: the encoded MP4 and the float16 features)."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Make the videos, measure each in a fresh process, print and record the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ingest_memory"), help="where the videos go")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60], help="video durations")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    minutes = sorted(args.minutes)
    videos = [make_long_video(args.workdir / f"long_{m:g}min_{SIZE}px.mp4", m) for m in minutes]
    floor = run_child(None, 0)
    runs = []
    for path, length in zip(videos, minutes, strict=True):
        runs.append(run_child(path, length))
        print(f"{length:g} min: peak RSS {runs[-1].peak_rss_mb:.0f} MB in {runs[-1].wall_s:.1f} s", flush=True)
    body = (
        f"Peak resident memory of one video's transcode (`pipeline.transcode.transcode`, ingest defaults: short "
        f"side 128, veryfast, one thread) in a fresh process, {SIZE}×{SIZE} 25 fps H.264 + 44.1 kHz stereo AAC "
        f"test videos made with the ffmpeg command line (`python benchmarks/ingest_memory.py`).\n\n"
        f"Machine: {machine_line()}\n\n{report(floor, runs)}"
    )
    print(body)
    if not args.no_write:
        write_section(args.results, SECTION, body)


if __name__ == "__main__":
    main()
