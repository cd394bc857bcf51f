"""Shared by the benchmark scripts: describe the machine and write a section of RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores() -> int | None:
    """Physical cores (None when /proc/cpuinfo does not say)."""
    try:
        pairs, physical, core = set(), None, None
        for line in [*Path("/proc/cpuinfo").read_text().splitlines(), ""]:
            if line.startswith("physical id"):
                physical = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                core = line.split(":", 1)[1].strip()
            elif not line.strip():
                if core is not None:
                    pairs.add((physical, core))
                physical, core = None, None
        return len(pairs) or None
    except OSError:
        return None


def busy_fraction(seconds: float = 2.0) -> float | None:
    """Share of all CPUs busy (not idle or waiting on I/O) over ``seconds``, from /proc/stat."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(values[:8]), values[3] + values[4]  # user..steal; idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def machine_line() -> str:
    """CPU, cores, memory, OS, Python, PyAV and ffmpeg versions and the time, for the record."""
    import av

    logical = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    physical = physical_cores()
    memory = ""
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    cli = "not installed"
    if shutil.which("ffmpeg"):
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()
        cli = first[0].split(" Copyright")[0].replace("ffmpeg version ", "") if first else "unknown"
    libav = av.library_versions.get("libavcodec", ())
    return (
        f"{cpu_model()}, {logical} logical CPUs ({usable} usable"
        f"{f', {physical} physical cores' if physical else ''}){memory}; {platform.platform()}; "
        f"Python {platform.python_version()}; PyAV {av.__version__} (libavcodec "
        f"{'.'.join(map(str, libav))}); ffmpeg CLI {cli}; "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
    )


REPO = Path(__file__).resolve().parent.parent


def portable_path(value: str | Path) -> str:
    """A path as a results file may show it: relative to the repository when inside it, else ``…/`` and its
    last part (one machine's folders mean nothing in another's clone); other text unchanged."""
    path = Path(value)
    if not path.is_absolute():
        return str(value)
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return f"…/{path.name}"


def run_module(command: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run ``python -m COMMAND`` from the repository in CI mode (plain progress lines), ``env`` added to the
    environment and its output in ``log``; returns the wall time, or stops the benchmark when it fails."""
    started = time.monotonic()
    with log.open("w") as handle:
        status = subprocess.run(
            [sys.executable, "-m", *command],
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CI": "true", **(env or {})},
        ).returncode
    if status != 0:
        raise SystemExit(f"{command[0]} failed (exit {status}); see {log}")
    return time.monotonic() - started


def make_synthetic_videos(
    out: Path, videos: int, duration_s: float, log: Path, *extra: str, env: dict[str, str] | None = None
) -> float:
    """``avts-synth``: ``videos`` synthetic 64-px videos of ``duration_s`` seconds in ``out``, on 2 workers (``extra``:
    more flags, e.g. ``--seed``); returns the wall time."""
    command = ["pipeline.synth_cli", "--out", str(out), "--videos", str(videos), "--duration", f"{duration_s:g}"]
    return run_module([*command, "--size", "64", "--workers", "2", *extra], log, env)


def ingest_small_videos(src: Path, shards: Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> float:
    """``avts-ingest`` of small (64-px) videos at short side 64 with the process pool on 2 workers (``extra``: more
    flags, e.g. ``--shard-size``); returns the wall time."""
    command = ["pipeline.cli", "--src", str(src), "--out", str(shards), "--engine", "processes", "--workers", "2"]
    return run_module([*command, "--short-side", "64", *extra], log, env)


def write_section(path: Path, title: str, body: str) -> None:
    """Replace the section ``## <title>`` of a markdown file (or append it), leaving the rest untouched."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(text)
    path.write_text(pattern.sub(lambda _: section + "\n", text) if found else text.rstrip() + "\n\n" + section)


def clips_in(folder: Path) -> list[Path]:
    """The ``*.mp4`` clips of a benchmark's ``--inputs`` folder, sorted; exits with a message when there are none."""
    found = sorted(folder.glob("*.mp4"))
    if not found:
        raise SystemExit(f"no *.mp4 in {folder}")
    return found
