"""The machine's own ceiling for the ingest's scaling: W independent processes, no pool, no shards, no manifests.

Each of W processes transcodes the same number of clips (``--per-process``; ``pipeline.transcode.transcode``,
one BLAS thread, one codec thread), one file after another, and nothing else: no driver, no task hand-out, no tar
or manifest. Where W busy cores slow each other down (shared memory bandwidth and caches, clocks that drop with
load, hyper-threads sharing a core), CPU seconds per clip grow with W: CPU(1) / CPU(W) per clip bounds the
scaling efficiency of any distributor on this machine (the ceiling). The wall-clock efficiency of these static
shares, wall(1 process) / wall(W processes), is shown beside it: it can be lower than the ingest's pool
(``ingest_bench.py``), since shares of unequal clips leave cores idle at the end while the pool hands out one
video at a time.

    python benchmarks/parallel_ceiling.py --inputs CLIPS --per-process 30 --workers-list 1,16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_results import clips_in, machine_line  # noqa: E402
from ingest_bench import transcode_loop  # noqa: E402


def transcode_all(paths: list[str]) -> None:
    """One share: the ingest benchmark's in-process loop over these clips, at the ingest's default settings."""
    from pipeline.config import IngestConfig

    transcode_loop([Path(path) for path in paths], IngestConfig(src=Path(".")))  # settings only: nothing is written


def run_shares(clips: list[Path], workers: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds of ``workers`` processes transcoding ``clips`` split round-robin."""
    shares = [[str(clip) for clip in clips[index::workers]] for index in range(workers)]  # equal when W divides
    code = "import json, sys; from parallel_ceiling import transcode_all; transcode_all(json.loads(sys.argv[1]))"
    from pipeline.distributor import worker_env  # one BLAS thread per process, as the ingest's workers have

    env = {**os.environ, **worker_env(1), "PYTHONPATH": f"{REPO}:{REPO / 'benchmarks'}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", code, json.dumps(share)], env=env) for share in shares]
    if any(process.wait() != 0 for process in processes):
        raise SystemExit("a share failed")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    """Time W independent shares for each W; print a markdown table against W = 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, required=True, help="folder of clips (*.mp4)")
    parser.add_argument("--per-process", type=int, default=30, help="clips per process (the folder's, cycled)")
    parser.add_argument("--workers-list", default="1,16", help="process counts, comma-separated; the first is the base")
    args = parser.parse_args(argv)
    found = clips_in(args.inputs)
    counts = [int(value) for value in args.workers_list.split(",")]
    run_shares(found[:1], 1)  # warm the page cache and the imports
    rows = []
    for workers in counts:
        clips = [found[index % len(found)] for index in range(workers * args.per_process)]
        wall, cpu = run_shares(clips, workers)
        rows.append((workers, wall, cpu / len(clips)))
        print(f"[ceiling] {workers} processes: {wall:.2f} s wall, {cpu:.1f} CPU-s", file=sys.stderr, flush=True)
    base_workers, base_wall, base_cpu = rows[0]
    print(machine_line())
    print(f"\n{args.per_process} clips per process, one after another (no pool).\n")
    print(
        f"| processes | clips | wall (s) | CPU-s per clip | ceiling = CPU({base_workers}) / CPU per clip | "
        f"static shares: wall({base_workers}) / wall |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for workers, wall, cpu_per_clip in rows:
        clips, ceiling, shares = workers * args.per_process, base_cpu / cpu_per_clip, base_wall / wall
        print(f"| {workers} | {clips} | {wall:.2f} | {cpu_per_clip:.3f} | {ceiling:.0%} | {shares:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
