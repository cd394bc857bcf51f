"""Ingest scaling with the same work per worker: `avts-ingest` on N clips with 1 worker, on W × N with W workers.

Both runs last about as long, so the fixed costs (interpreter start-up, workers starting, the last clips
finishing, the summary) weigh the same in each, as in the long jobs of a real corpus; a short job on W workers
instead measures mostly those fixed costs. Each round times the whole ``avts-ingest`` command (a fresh
interpreter, the process pool, manifests and exit: what a user times) once with 1 worker and once with W, in
alternating order (1, W then W, 1), because a shared host's speed drifts between runs. The clips are the
benchmark's Kinetics-like clips under distinct names, cycled, so both runs see the same mix when N is a multiple
of the folder's clip count.

    efficiency = (W × N / wall_W) / (W × N / wall_1) = wall_1 / wall_W

per round (each W run against the 1-worker run of the same round), and their median. CPU seconds per clip (the
command's process tree) and the host's steal time (CPU time taken by other virtual machines, from /proc/stat)
are shown for each run.

    python benchmarks/ingest_scaling.py --inputs CLIPS --workdir /tmp/scaling --per-worker 96 --workers 16 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_results import clips_in, machine_line, write_section  # noqa: E402
from ingest_bench import (  # noqa: E402
    EFFICIENCY_GOAL,
    command_arguments,
    ingest_config,
    link_sources,
    replicate,
    run_command,
)


@dataclass(frozen=True)
class Run:
    """One timed `avts-ingest` command."""

    round: int
    workers: int
    clips: int
    wall_s: float
    user_s: float
    sys_s: float
    steal_s: float | None

    @property
    def cpu_per_clip(self) -> float:
        """User + system CPU seconds of the command's process tree per clip."""
        return (self.user_s + self.sys_s) / self.clips


def default_shard_size() -> int:
    """The shard size a user gets from `avts-ingest` without ``--shard-size``."""
    from pipeline.config import IngestConfig

    return int(IngestConfig.__dataclass_fields__["shard_size"].default)


def steal_s() -> float | None:
    """CPU seconds stolen from this virtual machine by its host since boot, all CPUs (/proc/stat; None if unknown)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def ingested(manifests: Path) -> int:
    """How many videos the run's manifest records as ingested."""
    import pyarrow.parquet as pq

    statuses = pq.read_table(manifests / "videos.parquet", columns=["status"]).column("status").to_pylist()
    return statuses.count("ok")


def timed_command(src: Path, out_root: Path, workers: int, clips: int, round_index: int) -> Run:
    """Run the whole command once; fail loudly unless every clip was ingested."""
    config = ingest_config(src, out_root, workers, "processes", default_shard_size())
    before, steal = resource.getrusage(resource.RUSAGE_CHILDREN), steal_s()
    started = time.perf_counter()
    run_command(config)
    wall = time.perf_counter() - started
    after, steal_end = resource.getrusage(resource.RUSAGE_CHILDREN), steal_s()
    done = ingested(Path(config.manifests))
    if done != clips:
        raise SystemExit(f"{workers} workers ingested {done} of {clips} clips; see {config.manifests}")
    stolen = None if steal is None or steal_end is None else steal_end - steal
    run = Run(
        round_index, workers, clips, wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, stolen
    )
    print(
        f"[scaling] round {round_index}: {workers} worker{'s' if workers > 1 else ''}, {clips} clips: {wall:.2f} s, "
        f"{run.cpu_per_clip:.3f} CPU-s per clip",
        file=sys.stderr,
        flush=True,
    )
    return run


def report(runs: list[Run], workers: int, per_worker: int, command: str) -> str:
    """Markdown: every run, the per-round efficiency, its median, all rounds pooled and best against best."""
    lines = [
        f"Machine: {machine_line()}.",
        "",
        f"Command: `{command}`",
        "",
        f"Each round runs the whole `avts-ingest` command (process pool, default flags, shard size "
        f"{default_shard_size()}) with 1 worker on {per_worker} clips and with {workers} workers on "
        f"{workers * per_worker} clips, in alternating order; efficiency = wall(1) / wall({workers}) within the round "
        f"(the same clips per worker). Goal ≥ {EFFICIENCY_GOAL:.0%}.",
        "",
        "| round | workers | clips | wall (s) | clips/s | CPU-s per clip | of which system | cores busy (CPU / wall) | "
        "host steal (CPU-s) | efficiency |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    efficiencies = []
    for run in runs:
        efficiency = ""
        if run.workers == workers:
            base = next(r for r in runs if r.round == run.round and r.workers == 1)
            efficiencies.append(base.wall_s / run.wall_s)
            efficiency = f"{efficiencies[-1]:.1%}"
        steal = "n/a" if run.steal_s is None else f"{run.steal_s:.1f}"
        lines.append(
            f"| {run.round} | {run.workers} | {run.clips} | {run.wall_s:.2f} | {run.clips / run.wall_s:.1f} | "
            f"{run.cpu_per_clip:.3f} | {run.sys_s / (run.user_s + run.sys_s):.0%} | "
            f"{(run.user_s + run.sys_s) / run.wall_s:.2f} | {steal} | {efficiency} |"
        )
    ones = [r.wall_s for r in runs if r.workers == 1]
    manys = [r.wall_s for r in runs if r.workers == workers]
    rounds = f"{len(efficiencies)} round{'s' if len(efficiencies) > 1 else ''}"
    lines += [
        "",
        f"**Median efficiency over {rounds}: {statistics.median(efficiencies):.1%}** "
        f"(rounds {', '.join(f'{e:.1%}' for e in efficiencies)}); all rounds pooled, sum of wall(1) / sum of "
        f"wall({workers}): {sum(ones) / sum(manys):.1%}; best against best: {min(ones) / min(manys):.1%}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Time the rounds, print the report and write it to a section of the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, required=True, help="folder of clips (*.mp4), cycled under new names")
    parser.add_argument("--workdir", type=Path, required=True, help="scratch folder (inputs' links and outputs)")
    parser.add_argument("--per-worker", type=int, default=96, help="clips per worker (default 96)")
    parser.add_argument("--workers", type=int, default=16, help="the worker count compared with 1 (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one 1-worker and one W-worker run")
    parser.add_argument("--results", default="", help="markdown file to write the section to ('' for none)")
    parser.add_argument("--section", default="Ingest scaling, same clips per worker", help="section title")
    args = parser.parse_args(argv)
    if args.per_worker < 1 or args.workers < 2 or args.rounds < 1:
        parser.error("--per-worker and --rounds must be ≥ 1 and --workers ≥ 2")
    found = clips_in(args.inputs)
    workdir = args.workdir.resolve()
    clips = replicate(found, args.workers * args.per_worker, workdir / "replicas")
    sources = {1: link_sources(clips[: args.per_worker], workdir / "src1"), args.workers: workdir / "replicas"}
    timed_command(link_sources(clips[:1], workdir / "warmup"), workdir / "out", 1, 1, 0)  # page cache, imports
    runs = []
    for round_index in range(1, args.rounds + 1):
        order = (1, args.workers) if round_index % 2 else (args.workers, 1)
        for workers in order:
            runs.append(
                timed_command(sources[workers], workdir / "out", workers, workers * args.per_worker, round_index)
            )
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/ingest_scaling.py", *command_arguments(given)])
    body = report(runs, args.workers, args.per_worker, command)
    print(f"\n## {args.section}\n\n{body}\n")
    if args.results:
        write_section(Path(args.results), args.section, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
