"""`avts-ingest` as a library call: plan → resume check → distribute → manifests and stats → summary."""

from __future__ import annotations

import contextlib
import errno
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from avts import storage
from avts.progress import CountProgress
from avts.schema import SCHEMA_VERSION, TRAIN
from pipeline.config import IngestConfig
from pipeline.discover import (
    Discovery,
    KeyCollision,
    ShardJob,
    find_files,
    plan_shards,
    stats_subset_size,
    video_key,
)
from pipeline.distributor import Engine, ShardDone, VideoDone, distribute, worker_env
from pipeline.manifest import (
    FAILED,
    OK,
    SKIPPED,
    ShardPart,
    ShardRecord,
    VideoRow,
    part_path,
    read_part,
    skipped_row,
    source_size,
    source_stamp,
    video_row,
)
from pipeline.moments import combine
from pipeline.output_dir import OutputError, claim, locked, remove_own_shards, remove_temporaries
from pipeline.process_engine import ProcessEngine
from pipeline.ray_engine import RayEngine
from pipeline.splits import SplitFileError, SplitTable, match_files, read_split_files
from pipeline.tables import write_tables


class IngestError(Exception):
    """The job cannot start or produced nothing; the message says why and what to do."""


@dataclass
class IngestSummary:
    """What a run did, for the final table and for callers."""

    videos: int = 0
    ok: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    hours: float = 0.0
    shards: int = 0
    bytes: int = 0
    resumed_shards: int = 0
    failed_shards: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0


def run_ingest(config: IngestConfig, console: Console | None = None) -> IngestSummary:
    """Ingest ``config.src`` into shards and manifests; resumes a previous run with the same settings.

    Holds the local output folders' locks for the whole run (see :mod:`pipeline.output_dir`); what the run
    knows it owns (temporary files of killed workers, of a full disk; unfinished uploads on object storage) is
    cleaned up when it ends, however it ends. ``--out`` and ``--manifests`` may be URLs (``s3://…``).
    """
    console = console or Console(stderr=True, soft_wrap=True)
    try:
        with contextlib.ExitStack() as stack:
            for folder in config.local_folders():
                stack.enter_context(locked(folder))
            remote = [folder for folder in (config.out, config.manifest_dir) if storage.is_remote(folder)]
            if remote:
                console.print(
                    f"note: {' and '.join(dict.fromkeys(remote))} on object storage cannot be locked: "
                    "nothing stops a second avts-ingest writing there at the same time; run one job "
                    "per prefix",
                    highlight=False,
                )
            try:
                summary = ingest_locked(config, console)
            except BaseException:
                clean_up(config, console, quiet=True)
                raise
            clean_up(config, console, quiet=False)
            return summary
    except OutputError as error:
        raise IngestError(str(error)) from None
    except ImportError as error:
        if config.out_is_remote or config.manifests_are_remote:  # e.g. s3fs missing: the message says what to install
            raise IngestError(str(error)) from None
        raise
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise IngestError(
                f"no space left on device ({error.filename or 'while writing'}): free some space and "
                "rerun the same command; complete shards are kept and resumed"
            ) from None
        if isinstance(error, (PermissionError, ConnectionError)) and (
            config.out_is_remote or config.manifests_are_remote
        ):
            raise IngestError(str(error)) from None  # avts.storage's message names the URL and what to check
        raise


def clean_up(config: IngestConfig, console: Console, quiet: bool) -> None:
    """Remove this run's leftovers (see :func:`pipeline.output_dir.remove_temporaries`). Failing to clean up
    object storage does not fail the run: it is a warning, or nothing with ``quiet`` (when the run failed: its
    own error says what is wrong, e.g. credentials or a missing bucket, and the next run cleans up)."""
    folders = (config.out, config.manifest_dir, storage.join(config.manifest_dir, "parts"))
    remove_temporaries(*(folder for folder in folders if not storage.is_remote(folder)))
    for folder in (folder for folder in folders[:2] if storage.is_remote(folder)):  # a prefix covers parts/
        try:
            remove_temporaries(folder)
        except OSError as error:
            if not quiet:
                console.print(
                    f"[bold yellow]warning: could not clean up unfinished uploads under {folder}: {error}",
                    highlight=False,
                )


def ingest_locked(config: IngestConfig, console: Console) -> IngestSummary:
    """:func:`run_ingest` once the output folders are locked."""
    started = time.monotonic()
    discovery = find_files(config.src, exclude=config.local_folders())
    files = discovery.files
    if not files:
        raise IngestError(f"no files found under {config.src}")
    splits, skipped = read_splits(config, files, console)
    skipped += [skipped_row(entry.relpath, entry.reason, video_key(entry.relpath)) for entry in discovery.skipped]
    try:
        jobs = plan_shards(config.src, files, config.shard_size, config.val_fraction, config.seed, splits)
    except KeyCollision as error:
        raise IngestError(str(error)) from None
    warn_about_plan(jobs, discovery, console)
    prepare_output(config, jobs)
    present = {storage.basename(entry) for entry in storage.listdir(config.out)}  # one listing, not a look-up each
    finished = {job.name: part for job in jobs if (part := completed_part(config, job, present)) is not None}
    todo = [job for job in jobs if job.name not in finished]
    redone = [job.name for job in todo if job.name in present]
    if redone:
        console.print(
            f"redoing {len(redone)} shard(s) of an earlier run whose videos or source files have changed since: "
            + ", ".join(redone[:5])
            + (", ..." if len(redone) > 5 else ""),
            highlight=False,
        )
    parts = list(finished.values())
    failed_rows: list[VideoRow] = []
    failed_shards = 0
    with CountProgress(
        "ingest", sum(len(job.items) for job in jobs), "videos", console=console, plain=config.plain
    ) as bar:
        bar.already_done(sum(len(p.videos) for p in parts), sum(r.status == FAILED for p in parts for r in p.videos))
        engine = start_engine(config, sum(len(job.items) for job in todo)) if todo else None
        try:
            for event in distribute(todo, engine, config.in_flight) if engine else ():
                if isinstance(event, VideoDone):
                    bar.advance(1, int(event.report.row.status == FAILED))
                elif event.part is not None:
                    parts.append(event.part)
                else:
                    failed_shards += 1
                    failed_rows.extend(rows_for_failed_shard(event))
        finally:
            if engine is not None:
                engine.close()
    parts.sort(key=lambda part: part.record.shard)
    subset = choose_stats_subset(parts, config.stats_fraction)
    for part in parts:
        part.videos = [replace(row, in_stats_subset=row.key in subset) for row in part.videos]
    videos, shards = write_tables(config.manifest_dir, parts, failed_rows + skipped)
    summary = summarize(videos, shards, len(finished), failed_shards, time.monotonic() - started)
    if summary.ok == 0:
        raise IngestError(
            f"nothing was ingested from {len(files)} files; see the reasons in "
            f"{storage.join(config.manifest_dir, 'videos.parquet')}: {summary.failed_by_reason}"
        )
    if subset:
        combine(parts, subset, config.stats_fraction, config.seed).save(storage.join(config.manifest_dir, "stats.json"))
    return summary


def read_splits(config: IngestConfig, files: list[Path], console: Console) -> tuple[SplitTable | None, list[VideoRow]]:
    """With ``--split-file``: the split files' table and the ``skipped`` rows of the files they leave out."""
    if not config.split_file:
        return None, []
    try:
        table = read_split_files(config.split_file)
        report = match_files(config.src, files, table)
    except SplitFileError as error:
        raise IngestError(str(error)) from None
    console.print(report.describe(table))
    return table, report.skipped


def choose_stats_subset(parts: list[ShardPart], fraction: float) -> set[str]:
    """The first ``fraction`` of the ingested training videos in the seeded stats order."""
    ranked = sorted(
        (row.stats_rank, row.key)
        for part in parts
        for row in part.videos
        if row.status == OK and row.stats_rank is not None
    )
    return {key for _, key in ranked[: stats_subset_size(len(ranked), fraction)]}


def prepare_output(config: IngestConfig, jobs: list[ShardJob]) -> None:
    """Claim the output folders (refusing other jobs' or other settings' folders); with ``--overwrite`` remove
    this tool's earlier shards and parts; remove this tool's shards that the plan no longer has."""
    settings = {"schema_version": SCHEMA_VERSION, **config.content_settings()}
    if not config.out_is_remote:  # object stores have no folders to make
        Path(config.out).mkdir(parents=True, exist_ok=True)
    ours = claim(config.out, config.manifest_dir, settings, config.overwrite, config.allow_other_files)
    parts = storage.join(config.manifest_dir, "parts")
    if not config.manifests_are_remote:
        Path(parts).mkdir(parents=True, exist_ok=True)
    keep = set() if config.overwrite else {job.name for job in jobs}
    if ours or config.overwrite:
        for name in remove_own_shards(config.out, keep):  # from an earlier run over other or more input
            storage.remove(part_path(config.manifest_dir, name))
    if config.overwrite:
        for part in storage.glob(parts, "*.json"):
            storage.remove(part)


def warn_about_plan(jobs: list[ShardJob], discovery: Discovery, console: Console) -> None:
    """Say, before the work starts, what was passed over and whether anything goes to training."""
    if discovery.skipped:
        reasons = Counter(entry.reason.split(":", 1)[0] for entry in discovery.skipped)
        console.print(
            "passed over (rows with status 'skipped' in videos.parquet): "
            + ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items())),
            highlight=False,
        )
    if jobs and not any(job.split == TRAIN for job in jobs):
        console.print(
            "[bold yellow]warning: no video goes to training (every one is in the validation or test "
            "split): there will be no training shards and no stats.json"
        )


def completed_part(config: IngestConfig, job: ShardJob, present: set[str]) -> ShardPart | None:
    """The part of a shard finished by an earlier run over the same videos, else None (``present``: the names
    in the shard folder; only complete shards carry their final name). A shard one of whose source files has
    changed since (another size or modification time: replaced, re-downloaded, still being copied then), or whose
    local file no longer has the size its record says, is not finished: it is redone."""
    if job.name not in present:
        return None
    part = read_part(config.manifest_dir, job.name)
    if part is None or [row.key for row in part.videos] != [item.key for item in job.items]:
        return None
    if any(source_changed(row, item.path) for row, item in zip(part.videos, job.items, strict=True)):
        return None
    if not config.out_is_remote and source_size(Path(config.out) / job.name) != part.record.bytes:
        return None  # cut short or rewritten since (an object store's upload appears whole or not at all)
    return part


def source_changed(row: VideoRow, path: Path) -> bool:
    """Whether a source file differs from when its row was made: another size, or (rows that recorded it)
    another modification time, like rsync's quick check."""
    size, mtime_ns = source_stamp(path)
    return row.source_bytes != size or (row.source_mtime_ns is not None and row.source_mtime_ns != mtime_ns)


def start_engine(config: IngestConfig, videos: int) -> Engine:
    """The configured engine, its workers' math libraries limited to their threads; a local pool starts no more
    workers than there are ``videos`` to do (100 workers for 2 videos took 10 s and 2.7 GB to start)."""
    env = worker_env(config.threads_per_worker)
    if config.uses_ray:
        return RayEngine(config, env)
    workers = min(config.workers, max(videos, 1))
    return ProcessEngine(workers, config.encode_settings(), config.shard_output(), config.task_retries, env)


def rows_for_failed_shard(event: ShardDone) -> list[VideoRow]:
    """Failed rows for the videos of a shard that could not be written; a rerun retries them."""
    detail = f"{type(event.error).__name__}: {event.error}"[:500]
    return [video_row(item, FAILED, reason="shard not written", detail=detail) for item in event.job.items]


def summarize(
    videos: list[VideoRow], shards: list[ShardRecord], resumed: int, failed_shards: int, elapsed_s: float
) -> IngestSummary:
    """Counts, failure reasons, hours and bytes from the final tables' rows."""
    ok = [row for row in videos if row.status == OK]
    failed = [row for row in videos if row.status == FAILED]
    return IngestSummary(
        videos=len(videos),
        ok=len(ok),
        failed=len(failed),
        skipped=sum(row.status == SKIPPED for row in videos),
        failed_by_reason=dict(Counter(row.reason or "unknown" for row in failed)),
        hours=sum(row.duration_s or 0.0 for row in ok) / 3600,
        shards=len(shards),
        bytes=sum(record.bytes for record in shards),
        resumed_shards=resumed,
        failed_shards=failed_shards,
        elapsed_s=elapsed_s,
    )
