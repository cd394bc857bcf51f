"""`avts-ingest` as a library call: plan → resume check → distribute → manifests and stats → summary."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import pandas as pd
from rich.console import Console

from pipeline.config import IngestConfig
from pipeline.discover import ShardJob, find_files, plan_shards, stats_subset_size
from pipeline.distributor import run_jobs
from pipeline.manifest import FAILED, OK, ShardPart, VideoRow, part_path, read_part
from pipeline.tables import write_tables
from pipeline.progress import CountProgress
from pipeline.schema import SCHEMA_VERSION
from pipeline.stats import combine, write_stats
from pipeline.writer import atomic_write_bytes, remove_partials

SETTINGS_FILE = "ingest.json"


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
    elapsed_s: float = 0.0


def reason_category(reason: str | None) -> str:
    """The stable part of a failure reason (before the detail), for grouping."""
    return (reason or "unknown").split(":", 1)[0]


def run_ingest(config: IngestConfig, console: Console | None = None) -> IngestSummary:
    """Ingest ``config.src`` into shards and manifests; resumes a previous run with the same settings."""
    started = time.monotonic()
    console = console or Console(stderr=True)
    files = find_files(config.src)
    if not files:
        raise IngestError(f"no files found under {config.src}")
    jobs = plan_shards(config.src, files, config.shard_size, config.val_fraction, config.seed)
    prepare_output(config, jobs)
    finished = {job.name: part for job in jobs if (part := completed_part(config, job)) is not None}
    todo = [job for job in jobs if job.name not in finished]
    parts = list(finished.values())
    failed_rows: list[VideoRow] = []
    failed_shards = 0
    with CountProgress("ingest", len(files), "videos", console=console, plain=config.plain_progress) as bar:
        bar.advance(sum(len(p.videos) for p in parts), sum(r.status == FAILED for p in parts for r in p.videos))
        for job, outcome in run_jobs(todo, config):
            if isinstance(outcome, ShardPart):
                parts.append(outcome)
                bar.advance(len(outcome.videos), sum(row.status == FAILED for row in outcome.videos))
            else:
                failed_shards += 1
                failed_rows.extend(rows_for_failed_shard(job, outcome))
                bar.advance(len(job.items), len(job.items))
    parts.sort(key=lambda part: part.record.shard)
    subset = choose_stats_subset(parts, config.stats_fraction)
    for part in parts:
        part.videos = [replace(row, in_stats_subset=row.key in subset) for row in part.videos]
    videos, shards = write_tables(config.manifest_dir, parts, failed_rows)
    summary = summarize(videos, shards, len(finished), failed_shards, time.monotonic() - started)
    if summary.ok == 0:
        raise IngestError(f"nothing was ingested from {len(files)} files; see the reasons in "
                          f"{config.manifest_dir / 'videos.parquet'}: {summary.failed_by_reason}")
    if subset:
        write_stats(config.manifest_dir / "stats.json", combine(parts, subset, config.stats_fraction, config.seed))
    return summary


def choose_stats_subset(parts: list[ShardPart], fraction: float) -> set[str]:
    """The first ``fraction`` of the ingested training videos in the seeded stats order."""
    ranked = sorted((row.stats_rank, row.key) for part in parts for row in part.videos
                    if row.status == OK and row.stats_rank is not None)
    return {key for _, key in ranked[:stats_subset_size(len(ranked), fraction)]}


def prepare_output(config: IngestConfig, jobs: list[ShardJob]) -> None:
    """Create folders; refuse to mix settings; on ``--overwrite`` start over; drop partial and stale files."""
    settings = {"schema_version": SCHEMA_VERSION, **config.content_settings()}
    settings_path = config.manifest_dir / SETTINGS_FILE
    if config.overwrite:
        for path in config.out.glob("*.tar"):  # train and val-* shards alike (listing both twice broke this)
            path.unlink()
        shutil.rmtree(config.manifest_dir / "parts", ignore_errors=True)
        settings_path.unlink(missing_ok=True)
    elif settings_path.exists():
        previous = json.loads(settings_path.read_text())
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise IngestError(f"{config.out} holds shards made with other settings ({', '.join(changed)}); "
                              "rerun with the same settings to resume, or pass --overwrite to start over")
    config.out.mkdir(parents=True, exist_ok=True)
    (config.manifest_dir / "parts").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(settings_path, json.dumps(settings, indent=2).encode("utf-8"))
    for folder in (config.out, config.manifest_dir, config.manifest_dir / "parts"):
        remove_partials(folder)
    planned = {job.name for job in jobs}
    for path in config.out.glob("*.tar"):
        if path.name not in planned:  # from an earlier run over a larger input
            path.unlink()
            part_path(config.manifest_dir, path.name).unlink(missing_ok=True)


def completed_part(config: IngestConfig, job: ShardJob) -> ShardPart | None:
    """The part of a shard finished by an earlier run over the same videos, else None."""
    if not (config.out / job.name).exists():
        return None
    part = read_part(config.manifest_dir, job.name)
    if part is None or [row.key for row in part.videos] != [item.key for item in job.items]:
        return None
    return part


def rows_for_failed_shard(job: ShardJob, error: BaseException) -> list[VideoRow]:
    """Failed rows for the videos of a shard whose worker kept dying; a rerun retries them."""
    reason = f"worker failed: {type(error).__name__}: {error}"[:500]
    return [VideoRow(key=item.key, path=item.relpath, label=item.label, split=item.split, status=FAILED,
                     reason=reason, duration_s=None, fps=None, width=None, height=None, has_audio=None,
                     audio_sample_rate=None, audio_channels=None, shard=None,
                     in_stats_subset=False, source_bytes=item.path.stat().st_size, stats_rank=item.stats_rank)
            for item in job.items]


def summarize(videos: pd.DataFrame, shards: pd.DataFrame, resumed: int, failed_shards: int,
              elapsed_s: float) -> IngestSummary:
    """Counts, failure reasons, hours and bytes from the final tables."""
    ok = videos[videos.status == OK]
    failed = videos[videos.status == FAILED]
    return IngestSummary(
        videos=len(videos), ok=len(ok), failed=len(failed),
        failed_by_reason=dict(Counter(reason_category(r) for r in failed.reason)),
        hours=float(ok.duration_s.sum()) / 3600, shards=len(shards), bytes=int(shards.bytes.sum()),
        resumed_shards=resumed, failed_shards=failed_shards, elapsed_s=elapsed_s)
