"""Ingest throughput benchmark: `avts-ingest` against the ffmpeg command line on the same clips.

Usage (from the repository root)::

    python benchmarks/ingest_bench.py --workdir /tmp/bench --videos 16 --workers-list 1,2
    python benchmarks/ingest_bench.py --workdir /tmp/bench --videos 256 --make-inputs-only   # just the clips
    python benchmarks/ingest_bench.py --workdir /tmp/bench --inputs /tmp/bench/inputs --workers-list 1,8,16

Inputs are Kinetics-like clips (10 s, 340×256, 25 fps, H.264 yuv420p + AAC stereo 44.1 kHz) cut with the
ffmpeg command line from the real clips in ``../shared/data/real_clips`` (or ``$AVTS_SHARED_DATA/real_clips``;
those with non-silent audio and at least 10 s; each output clip uses another start offset, looping the source
where needed), or ready clips
from ``--inputs DIR``. With ``--inputs`` the benchmark runs without the ffmpeg command line: the baselines
that need it are then skipped and the report says so.

What is timed, on the same files, on the same machine, in the same process run (wall clock,
``time.perf_counter``, best of ``--repeats``; the page cache is warmed first and one untimed warm-up run of
each tool is made):

* floor: ``ffmpeg -threads 1 -i X -f null -`` (decode only), W files at a time;
* CLI baseline: the ffmpeg command line doing the same transformation as the ingest (same filter chain,
  libx264 settings, 16 kHz mono audio; no filterbank features, which it cannot compute), both W files at a
  time with ``-threads 1 -filter_threads 1`` and with ffmpeg's default threading one file at a time; the
  faster of the two is the baseline;
* ours: ``pipeline.ingest.run_ingest`` with an ``IngestConfig`` (engine ``auto``, ``processes`` or ``ray``), fresh
  output, for each worker count W, in this (warmed-up) process; and the whole ``avts-ingest`` command the same way
  (``python -m pipeline.cli``: a fresh interpreter's start-up and imports, the engine's start, the summary and exit
  included), which is what a user times.

It prints markdown tables and writes them to a ``## Ingest`` section of ``--results`` (replacing that
section if it exists, appending it otherwise), with a line describing the machine.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_results import busy_fraction, machine_line, portable_path, write_section  # noqa: E402

DEFAULT_SOURCES = Path(os.environ.get("AVTS_SHARED_DATA") or REPO.parent / "shared" / "data") / "real_clips"
CLIP_SECONDS = 10.0
CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS = 340, 256, 25
OFFSET_STEP_S = 3.3  # start offset between successive clips cut from the same source
MIN_MEAN_VOLUME_DB = -60.0  # sources quieter than this (e.g. digitally silent audio) are not used
RATIO_GOAL = 1.0  # issue 10: at most the ffmpeg CLI doing the same work, start-up included
EFFICIENCY_GOAL = 0.85
CLIP_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Source:
    path: Path
    duration_s: float


def ffprobe_json(path: Path) -> dict:
    import json

    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(out.stdout or "{}")


def mean_volume_db(path: Path) -> float:
    out = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-t",
            str(CLIP_SECONDS),
            "-af",
            "volumedetect",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"mean_volume:\s*(-?[\d.]+|-inf) dB", out.stderr)
    return float(match.group(1)) if match else float("-inf")


def usable_sources(folder: Path) -> tuple[list[Source], list[str]]:
    """Source clips with an audio stream, ≥ 10 s and audible audio; and why the others were left out."""
    sources, skipped = [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in CLIP_SUFFIXES):
        probe = ffprobe_json(path)
        kinds = {s.get("codec_type") for s in probe.get("streams", [])}
        duration = float(probe.get("format", {}).get("duration") or 0.0)
        if "audio" not in kinds or "video" not in kinds:
            skipped.append(f"{path.name} (no audio)")
        elif duration < CLIP_SECONDS:
            skipped.append(f"{path.name} ({duration:.1f} s < {CLIP_SECONDS:.0f} s)")
        elif (volume := mean_volume_db(path)) < MIN_MEAN_VOLUME_DB:
            skipped.append(f"{path.name} (silent audio, mean {volume:.0f} dB)")
        else:
            sources.append(Source(path, duration))
    return sources, skipped


def clip_plan(sources: list[Source], count: int) -> list[tuple[str, Source, float]]:
    """``count`` distinct (file name, source, start offset) triples, cycling over the sources."""
    plan, seen = [], set()
    for index in range(count):
        source = sources[index % len(sources)]
        use = index // len(sources)
        offset = round((use * OFFSET_STEP_S) % source.duration_s, 2)
        while (source.path, offset) in seen:  # never two identical clips
            offset = round((offset + 0.37) % source.duration_s, 2)
        seen.add((source.path, offset))
        stem = re.sub(r"[^A-Za-z0-9]+", "_", source.path.stem)[:40]
        plan.append((f"clip{index:05d}_{stem}_{int(offset * 100):06d}.mp4", source, offset))
    return plan


def make_clip(source: Source, offset: float, target: Path) -> None:
    """One Kinetics-like clip: 10 s from ``offset`` (looping the source), 340×256 25 fps H.264 + AAC stereo."""
    partial = target.with_name(target.name + ".partial.mp4")
    command = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-stream_loop",
        "-1",
        "-ss",
        f"{offset:.2f}",
        "-i",
        str(source.path),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0",
        "-t",
        f"{CLIP_SECONDS:.0f}",
        "-vf",
        f"fps={CLIP_FPS},scale={CLIP_WIDTH}:{CLIP_HEIGHT},setsar=1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-ar",
        "44100",
        "-movflags",
        "+faststart",
        str(partial),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"making {target.name} failed: {result.stderr.strip()[-500:]}")
    partial.rename(target)


def existing_clips(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in CLIP_SUFFIXES and ".partial" not in p.name and not p.name.startswith(".")
    )


def make_inputs(folder: Path, count: int, sources_dir: Path) -> list[Path]:
    """Create (or reuse) ``count`` clips in ``folder`` with the ffmpeg command line."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise SystemExit(
            "making inputs needs the ffmpeg and ffprobe command line tools; on a machine "
            "without them pass --inputs DIR with clips made elsewhere (--make-inputs-only)"
        )
    sources, skipped = usable_sources(sources_dir)
    if not sources:
        raise SystemExit(f"no usable source clips (audio, ≥ {CLIP_SECONDS:.0f} s) in {sources_dir}")
    log(
        f"sources: {len(sources)} usable ({', '.join(s.path.name for s in sources)}); "
        f"left out: {', '.join(skipped) or 'none'}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    plan = clip_plan(sources, count)
    todo = [(folder / name, source, offset) for name, source, offset in plan if not (folder / name).exists()]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda t: make_clip(t[1], t[2], t[0]), todo))
    log(
        f"inputs: {len(plan)} clips in {folder} ({len(todo)} made in {time.perf_counter() - started:.1f} s, "
        f"{len(plan) - len(todo)} reused)"
    )
    return [folder / name for name, _, _ in plan]


def clip_duration_s(path: Path) -> float:
    """Duration from the container header, with PyAV (no ffprobe needed)."""
    import av

    with av.open(str(path)) as container:
        if container.duration:
            return container.duration / 1_000_000
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base) if stream.duration else 0.0


# ------------------------------------------------------------------------------------------- timing


@dataclass
class Timing:
    name: str
    workers: int | None  # files at a time; None for "one file at a time, default threading"
    wall_s: float
    cpu_s: float | None  # user + sys of this process and its waited-for children; None when unknown
    note: str = ""
    others_cpu_s: float | None = None  # CPU used meanwhile by processes not started by this run


@dataclass
class Report:
    clips: int
    video_s: float
    timings: list[Timing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def best(self, name: str, workers: int | None) -> Timing | None:
        found = [t for t in self.timings if t.name == name and t.workers == workers]
        return min(found, key=lambda t: t.wall_s) if found else None


def cpu_now() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_commands(commands: list[list[str]], parallel: int) -> None:
    """Run the commands, ``parallel`` at a time (threads launching subprocesses); fail loudly."""

    def one(command: list[str]) -> None:
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed: {result.stderr.strip()[-500:]}")

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, commands))


def machine_busy_s() -> float | None:
    """CPU seconds all processes on the machine have used since boot (user..steal, /proc/stat)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def timed(name: str, workers: int | None, action, note: str = "") -> Timing:
    cpu, busy = cpu_now(), machine_busy_s()
    started = time.perf_counter()
    action()
    wall = time.perf_counter() - started
    cpu_s = cpu_now() - cpu
    end_busy = machine_busy_s()
    others = None if busy is None or end_busy is None else max(0.0, end_busy - busy - cpu_s)
    return Timing(name, workers, wall, cpu_s, note, others)


def filter_chain(short_side: int) -> str:
    """The ingest's filter chain for an unrotated source (the CLI autorotates the others by itself)."""
    from avts.schema import VIDEO_FPS
    from pipeline.video import short_side_scale

    return f"fps={VIDEO_FPS},scale={short_side_scale(short_side)},format=yuv420p"


def floor_command(clip: Path) -> list[str]:
    return [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-threads",
        "1",
        "-i",
        str(clip),
        "-f",
        "null",
        "-",
    ]


def cli_command(clip: Path, out: Path, single_thread: bool, config) -> list[str]:
    from avts.schema import AUDIO_SAMPLE_RATE, GOP_FRAMES
    from pipeline.video import x264_options

    one = ["-threads", "1"] if single_thread else []
    x264 = x264_options(config.preset, config.crf, GOP_FRAMES)  # exactly the ingest's encoder settings
    return [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        *one,
        "-i",
        str(clip),
        *(["-filter_threads", "1"] if single_thread else []),
        "-vf",
        filter_chain(config.short_side),
        "-c:v",
        "libx264",
        *(arg for name, value in x264.items() for arg in (f"-{name}", value)),
        *one,
        "-ac",
        "1",
        "-ar",
        str(AUDIO_SAMPLE_RATE),
        "-c:a",
        "pcm_s16le",
        str(out),
    ]


def cli_commands(clips: list[Path], out_dir: Path, single_thread: bool, config) -> list[list[str]]:
    return [cli_command(clip, out_dir / f"{clip.stem}.mkv", single_thread, config) for clip in clips]


PLACEHOLDERS = {"--workdir": "$WORK", "--inputs": "$CLIPS"}  # as RESULTS.md's header explains them


def command_arguments(given: list[str]) -> list[str]:
    """The benchmark's arguments as RESULTS.md shows them: the scratch and clips folders as ``$WORK`` and
    ``$CLIPS``, other paths made portable, all quoted for a shell."""
    shown = []
    for index, value in enumerate(given):
        name, equals, _ = value.partition("=")
        if equals and name in PLACEHOLDERS:
            shown.append(f"{name}={PLACEHOLDERS[name]}")
        elif index and given[index - 1] in PLACEHOLDERS:
            shown.append(PLACEHOLDERS[given[index - 1]])
        else:
            shown.append(shlex.quote(portable_path(value)))
    return shown


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def ingest_config(src: Path, out_root: Path, workers: int, engine: str, shard_size: int):
    from pipeline.config import IngestConfig

    return IngestConfig(
        src=src,
        out=out_root / "shards",
        manifests=out_root / "manifests",
        workers=workers,
        engine=engine,
        shard_size=shard_size,
        val_fraction=0.0,
        overwrite=True,
        plain=True,
    )


def run_ours(config) -> object:
    from rich.console import Console

    from pipeline.ingest import run_ingest

    fresh_dir(Path(config.out).parent)
    return run_ingest(config, console=Console(file=io.StringIO(), quiet=True))


def run_command(config) -> None:
    """The same ingest as :func:`run_ours`, as the ``avts-ingest`` command in a fresh interpreter."""
    fresh_dir(Path(config.out).parent)
    command = [sys.executable, "-m", "pipeline.cli", "--src", str(config.src), "--out", str(config.out)]
    command += ["--manifests", str(config.manifests), "--workers", str(config.workers), "--engine", config.engine]
    command += ["--shard-size", str(config.shard_size), "--val-fraction", str(config.val_fraction), "--plain"]
    result = subprocess.run(command, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed: {result.stderr.strip()[-500:]}")


def transcode_loop(clips: list[Path], config) -> None:
    """Diagnostic: the ingest's per-file work (`transcode`) in this process, one file after another."""
    from pipeline.discover import VideoItem
    from pipeline.transcode import transcode

    for clip in clips:
        values = {"key": "bench", "path": clip.resolve(), "relpath": clip.name, "label": None, "split": "train"}
        transcode(VideoItem(**{f.name: values.get(f.name) for f in fields(VideoItem)}), config.encode_settings())


def worker_import_s() -> float:
    """Diagnostic: wall time of a fresh interpreter importing the worker module (each spawned worker pays it)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipeline.tasks"], cwd=REPO, check=True)
    return time.perf_counter() - started


def replicate(clips: list[Path], count: int, folder: Path) -> list[Path]:
    """``count`` inputs cycling through ``clips`` under distinct names (symlinks): same work, distinct keys."""
    fresh_dir(folder)
    made = []
    for index in range(count):
        clip = clips[index % len(clips)]
        link = folder / f"r{index // len(clips):03d}_{clip.name}"
        link.symlink_to(clip.resolve())
        made.append(link)
    return made


def link_sources(clips: list[Path], folder: Path) -> Path:
    """A source folder holding exactly the benchmark clips (symlinks), for `run_ingest`."""
    fresh_dir(folder)
    for clip in clips:
        (folder / clip.name).symlink_to(clip.resolve())
    return folder


def warm_page_cache(clips: list[Path]) -> int:
    total = 0
    for clip in clips:
        with open(clip, "rb") as handle:
            while chunk := handle.read(1 << 20):
                total += len(chunk)
    return total


# ----------------------------------------------------------------------------------------- reporting


def fmt(value: float | None, digits: int = 2, suffix: str = "", missing: str = "n/a") -> str:
    return (
        missing if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}{suffix}"
    )


def summary_table(report: Report, workers_list: list[int], have_cli: bool) -> str:
    skipped = "n/a" if have_cli else "skipped"
    sequential = report.best("cli-default-threads", None)
    ours_one = report.best("ours", 1)
    command_one = report.best("ours-command", 1)
    rows = [
        "| workers | floor: decode only (s) | CLI, W files × `-threads 1` (s) | CLI, default threads, "
        "1 file at a time (s) | baseline (s) | ours (s) | ours video-s / core-s | ours clips/s | "
        f"ours / baseline (goal ≤ {RATIO_GOAL}) | ours / CLI W × 1 thread | ours / floor | speedup vs 1 | "
        f"scaling efficiency (goal ≥ {EFFICIENCY_GOAL:.0%} at 16) | whole command (s) | "
        f"command / baseline (goal ≤ {RATIO_GOAL}) | command speedup vs 1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workers in workers_list:
        floor = report.best("floor", workers)
        parallel = report.best("cli-1-thread", workers)
        ours = report.best("ours", workers)
        command = report.best("ours-command", workers)
        candidates = [t for t in (parallel, sequential) if t is not None]
        baseline = min(candidates, key=lambda t: t.wall_s) if candidates else None
        command_ratio = command.wall_s / baseline.wall_s if command and baseline else None
        command_mark = "" if command_ratio is None else (" ✓" if command_ratio <= RATIO_GOAL else " ✗")
        which = ""
        if baseline is not None:
            which = " (W × 1 thread)" if baseline is parallel else " (default threads)"
        wall = ours.wall_s if ours else None
        per_core = report.video_s / (wall * workers) if wall else None
        speedup = ours_one.wall_s / wall if ours_one and wall else None
        efficiency = speedup / workers if speedup else None
        ratio = wall / baseline.wall_s if wall and baseline else None
        mark = "" if ratio is None else (" ✓" if ratio <= RATIO_GOAL else " ✗")
        rows.append(
            f"| {workers} | {fmt(floor.wall_s if floor else None, missing=skipped)} | "
            f"{fmt(parallel.wall_s if parallel else None, missing=skipped)} | "
            f"{fmt(sequential.wall_s if sequential else None, missing=skipped)} | "
            f"{fmt(baseline.wall_s if baseline else None, missing=skipped)}{which} | {fmt(wall)} | {fmt(per_core)} | "
            f"{fmt(report.clips / wall if wall else None)} | {fmt(ratio, missing=skipped)}{mark} | "
            f"{fmt(wall / parallel.wall_s if wall and parallel else None, missing=skipped)} | "
            f"{fmt(wall / floor.wall_s if wall and floor else None, missing=skipped)} | {fmt(speedup)} | "
            f"{fmt(efficiency * 100 if efficiency else None, 0, '%')} | {fmt(command.wall_s if command else None)} | "
            f"{fmt(command_ratio, missing=skipped)}{command_mark} | "
            f"{fmt(command_one.wall_s / command.wall_s if command_one and command else None)} |"
        )
    return "\n".join(rows)


def detail_table(report: Report) -> str:
    labels = {
        "floor": "floor: `ffmpeg -threads 1 -i X -f null -`",
        "cli-1-thread": "CLI transform, `-threads 1 -filter_threads 1`",
        "cli-default-threads": "CLI transform, default threading",
        "ours": "ours: `run_ingest`",
        "ours-command": "ours: the `avts-ingest` command",
        "transcode-loop": "diagnostic: ours' `transcode()` in-process, no pool/shards",
    }
    rows = [
        "| run | files at a time | wall (s) | CPU user+sys (s) | CPU / wall | clips/s | video-s per wall-s | "
        "CPU of other processes meanwhile (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in report.timings:
        at_a_time = str(t.workers) if t.workers is not None else "1 (all threads)"
        cpu = fmt(t.cpu_s, 1) if t.cpu_s is not None else "n/a"
        load = fmt(t.cpu_s / t.wall_s, 2) if t.cpu_s is not None else "n/a"
        rows.append(
            f"| {labels.get(t.name, t.name)}{t.note} | {at_a_time} | {t.wall_s:.2f} | {cpu} | {load} | "
            f"{report.clips / t.wall_s:.2f} | {report.video_s / t.wall_s:.1f} | "
            f"{fmt(t.others_cpu_s, 1) if t.cpu_s is not None else 'n/a'} |"
        )
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch folder for inputs and outputs (required unless --make-inputs-only with --inputs)",
    )
    parser.add_argument("--videos", type=int, default=16, help="number of clips (default 16)")
    parser.add_argument("--workers-list", default="1,2", help="worker counts, comma-separated (default 1,2)")
    parser.add_argument(
        "--engine",
        choices=("auto", "processes", "ray"),
        default="auto",
        help="distributor engine of the ingest (default auto, as avts-ingest: the process pool on one machine; "
        "an engine's start-up is timed)",
    )
    parser.add_argument(
        "--results",
        default=str(REPO / "benchmarks" / "RESULTS.md"),
        help="markdown file whose `## Ingest` section is written (default "
        "benchmarks/RESULTS.md); pass '' to write none",
    )
    parser.add_argument("--section", default="Ingest", help="section title in the results file (default Ingest)")
    parser.add_argument(
        "--inputs",
        "--inputs-dir",
        dest="inputs",
        type=Path,
        default=None,
        help="folder of ready clips (the first --videos, sorted by name, are used); "
        "default WORKDIR/inputs, made with the ffmpeg CLI",
    )
    parser.add_argument(
        "--make-inputs-only",
        action="store_true",
        help="only create the input clips (in --inputs or WORKDIR/inputs) and stop",
    )
    parser.add_argument(
        "--sources",
        type=Path,
        default=DEFAULT_SOURCES,
        help=f"real clips to cut the inputs from (default {DEFAULT_SOURCES})",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help="videos per shard (default: avts-ingest's; work is handed out per video, so the shard "
        "count does not limit parallelism)",
    )
    parser.add_argument(
        "--no-diagnostics",
        action="store_true",
        help="skip the diagnostic runs (in-process transcode loop, worker import time)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="time each run this many times, keep the best")
    args = parser.parse_args(argv)
    try:
        args.workers = list(dict.fromkeys(int(w) for w in args.workers_list.split(",") if w.strip()))
    except ValueError:
        parser.error("--workers-list must be comma-separated integers, e.g. 1,2,4")
    if not args.workers or min(args.workers) < 1:
        parser.error("--workers-list needs worker counts ≥ 1")
    if args.workdir is None and not (args.make_inputs_only and args.inputs is not None):
        parser.error("--workdir is required (except for --make-inputs-only with --inputs DIR)")
    if args.videos < 1 or args.repeats < 1:
        parser.error("--videos and --repeats must be ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # this process's in-process runs (the driver, the transcode() diagnostic) get one BLAS thread, as the ingest's
    # workers do (pipeline.distributor.worker_env), set before numpy is first imported
    os.environ.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"))
    inputs_dir = (args.inputs or args.workdir / "inputs").resolve()
    have_cli = shutil.which("ffmpeg") is not None
    if args.make_inputs_only:
        make_inputs(inputs_dir, args.videos, args.sources)
        return 0
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    clips = existing_clips(inputs_dir)
    if len(clips) < args.videos:
        if have_cli and shutil.which("ffprobe") is not None and (args.inputs is None or not clips):
            clips = make_inputs(inputs_dir, args.videos, args.sources)
        elif not clips:
            raise SystemExit(
                f"no clips in {inputs_dir}; make them where the ffmpeg CLI is installed with "
                f"--make-inputs-only --inputs {inputs_dir}"
            )
    if len(clips) < args.videos:  # e.g. on the GPU box, where only a few clips could be carried
        log(f"only {len(clips)} clips in {inputs_dir}: each is used under several names to make {args.videos}")
        clips = replicate(clips, args.videos, workdir / "replicas")
    clips = clips[: args.videos]

    from pipeline.config import IngestConfig  # import the library before any timing
    from pipeline.ingest import run_ingest  # noqa: F401

    video_s = sum(clip_duration_s(c) for c in clips)
    report = Report(clips=len(clips), video_s=video_s)
    shard_size = args.shard_size or IngestConfig.__dataclass_fields__["shard_size"].default
    defaults = ingest_config(inputs_dir, workdir, 1, args.engine, shard_size)
    src = link_sources(clips, workdir / "src")
    log(
        f"{len(clips)} clips, {video_s:.1f} s of video, {sum(c.stat().st_size for c in clips) / 2**20:.1f} MiB; "
        f"workers {args.workers}; engine {args.engine}; shard size {shard_size}; repeats {args.repeats}"
    )

    # Warm-up: page cache, the ffmpeg binary and libraries, the ingest's worker imports.
    warm_page_cache(clips)
    if have_cli:
        run_commands([floor_command(clips[0])], 1)
        run_commands(cli_commands(clips[:1], fresh_dir(workdir / "warmup_cli"), True, defaults), 1)
    warm_src = link_sources(clips[:1], workdir / "warmup_src")
    run_ours(ingest_config(warm_src, workdir / "warmup_ours", 1, args.engine, shard_size))
    shutil.rmtree(workdir / "warmup_cli", ignore_errors=True)
    shutil.rmtree(workdir / "warmup_ours", ignore_errors=True)
    shutil.rmtree(warm_src, ignore_errors=True)

    background = busy_fraction()
    if background is not None:
        log(f"background load before timing: {background:.0%} of the CPUs busy")
        report.notes.append(
            f"Background load just before the timed runs: {background:.0%} of all CPUs busy "
            f"(load average {os.getloadavg()[0]:.2f})"
            + ("; **other work was running, so these numbers are disturbed**." if background > 0.10 else ".")
        )
    if not have_cli:
        report.notes.append(
            "The ffmpeg command line is not installed on this machine (`shutil.which('ffmpeg')` "
            "is None): the floor and the CLI baselines were **skipped**; only ours was timed."
        )
    for _ in range(args.repeats):
        if have_cli:
            out = fresh_dir(workdir / "cli_out")
            report.timings.append(
                timed(
                    "cli-default-threads",
                    None,
                    lambda out=out: run_commands(cli_commands(clips, out, False, defaults), 1),
                )
            )
            log(f"CLI default threads, 1 at a time: {report.timings[-1].wall_s:.2f} s")
        for workers in args.workers:
            if have_cli:
                report.timings.append(
                    timed(
                        "floor",
                        workers,
                        lambda workers=workers: run_commands([floor_command(c) for c in clips], workers),
                    )
                )
                log(f"floor W={workers}: {report.timings[-1].wall_s:.2f} s")
                out = fresh_dir(workdir / "cli_out")
                report.timings.append(
                    timed(
                        "cli-1-thread",
                        workers,
                        lambda out=out, workers=workers: run_commands(
                            cli_commands(clips, out, True, defaults), workers
                        ),
                    )
                )
                log(f"CLI W={workers} × 1 thread: {report.timings[-1].wall_s:.2f} s")
            config = ingest_config(src, workdir / f"ours_w{workers}", workers, args.engine, shard_size)
            holder = {}
            timing = timed(
                "ours",
                workers,
                lambda holder=holder, config=config: holder.setdefault("summary", run_ours(config)),
                note=f" ({args.engine})",
            )
            report.timings.append(timing)
            command_timing = timed("ours-command", workers, lambda config=config: run_command(config), timing.note)
            report.timings.append(command_timing)
            if config.uses_ray:
                for ray_timing in (timing, command_timing):
                    ray_timing.cpu_s = None  # Ray's workers are not children of this process: their CPU is not seen
            log(f"ours W={workers}, whole avts-ingest command: {command_timing.wall_s:.2f} s")
            summary = holder["summary"]
            log(
                f"ours W={workers}: {timing.wall_s:.2f} s ({summary.ok} ok, {summary.failed} failed, "
                f"{summary.shards} shards)"
            )
            if summary.ok != len(clips):
                report.notes.append(
                    f"ours W={workers}: only {summary.ok} of {len(clips)} clips ingested ({summary.failed_by_reason})."
                )
            shutil.rmtree(Path(config.out).parent, ignore_errors=True)
        shutil.rmtree(workdir / "cli_out", ignore_errors=True)
        if not args.no_diagnostics:
            report.timings.append(timed("transcode-loop", 1, lambda: transcode_loop(clips, defaults)))
            log(f"diagnostic: transcode() loop in this process: {report.timings[-1].wall_s:.2f} s")
    seen = [t for t in report.timings if t.cpu_s is not None and t.others_cpu_s is not None]
    if seen:
        others = sum(t.others_cpu_s for t in seen)
        share = others / (sum(t.wall_s for t in seen) * (os.cpu_count() or 1))
        report.notes.append(
            f"Other processes used {others:.1f} CPU-s during the timed runs ({share:.0%} of the "
            "machine's CPU time)" + ("; **the numbers are disturbed by other work**." if share > 0.05 else ".")
        )
    if not args.no_diagnostics:
        imports = min(worker_import_s() for _ in range(2))
        report.notes.append(
            f"Diagnostic: a fresh interpreter takes {imports:.2f} s (wall, best of 2) to "
            "`import pipeline.tasks`; every worker process that the ingest starts pays "
            "this once per run. The `transcode()` loop row is the per-file work alone (no worker "
            "processes, shards or manifests), one file after another in the benchmark's process."
        )

    source = "ready clips from `$CLIPS`" if args.inputs else f"cut from {portable_path(args.sources)}"
    given = sys.argv[1:] if argv is None else argv
    command = "python " + " ".join([portable_path(sys.argv[0]), *command_arguments(given)])
    if 1 not in args.workers:
        report.notes.append("1 worker was not in --workers-list: no speedup or scaling efficiency.")
    body = "\n".join(
        [
            f"Machine: {machine_line()}.",
            "",
            f"Command: `{command}`",
            "",
            f"Inputs: {report.clips} clips, {report.video_s:.1f} s of video in all "
            f"({source}; "
            f"Kinetics-like: 10 s, {CLIP_WIDTH}×{CLIP_HEIGHT}, {CLIP_FPS} fps H.264 + AAC stereo 44.1 kHz). "
            f"Ours: engine `{args.engine}`, shard size {shard_size}, 1 thread per worker. Wall clock "
            f"(`time.perf_counter`), best of {args.repeats}; page cache warmed and one untimed warm-up run of each "
            "tool first. Baseline = the faster of the two CLI arrangements (it makes the video and the 16 kHz "
            "audio but no filterbank features). Video-s / core-s = input video seconds / (wall × workers).",
            "",
            summary_table(report, args.workers, have_cli),
            "",
            "All timed runs:",
            "",
            detail_table(report),
            *(["", *[f"- {note}" for note in report.notes]] if report.notes else []),
        ]
    )
    print(f"\n## {args.section}\n\n{body}\n")
    if args.results:
        write_section(Path(args.results), args.section, body)
        log(f"wrote section '## {args.section}' of {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
