"""Subsampler driver for one shard: transcode its videos, write the tar, report rows and stats sums.

This is the unit of work the distributor ships to Ray (or a process pool). A bad video becomes a failed
row and never fails its shard; the shard appears under its final name only when complete.
"""

from __future__ import annotations

from pipeline.config import IngestConfig
from pipeline.discover import ShardJob, VideoItem
from pipeline.manifest import FAILED, OK, ShardPart, ShardRecord, VideoRow, write_part
from pipeline.transcode import MediaError, SourceInfo, Transcoded, fbank_moments, transcode
from pipeline.writer import ShardWriter, sha256_of


def _row(item: VideoItem, info: SourceInfo, status: str, reason: str | None, shard: str | None,
         duration_s: float | None = None, decode_errors: int = 0) -> VideoRow:
    return VideoRow(key=item.key, path=item.relpath, label=item.label, split=item.split, status=status,
                    reason=reason, duration_s=duration_s, fps=info.fps, width=info.width, height=info.height,
                    has_audio=info.has_audio, audio_sample_rate=info.audio_sample_rate,
                    audio_channels=info.audio_channels, shard=shard, in_stats_subset=False,
                    source_bytes=item.path.stat().st_size if item.path.exists() else 0,
                    decode_errors=decode_errors, stats_rank=item.stats_rank)


def _transcode_or_failure(item: VideoItem, config: IngestConfig) -> Transcoded | MediaError:
    try:
        return transcode(item, config)
    except MediaError as error:
        return error
    except Exception as error:  # noqa: BLE001 - one bad video must never fail its shard
        return MediaError("internal error", f"{type(error).__name__}: {error}")


def ingest_shard(job: ShardJob, config: IngestConfig) -> ShardPart:
    """Process every video of ``job`` into ``config.out/job.name`` and record the part file."""
    target = config.out / job.name
    rows: list[VideoRow] = []
    moments: dict[str, tuple[list[float], list[float], int]] = {}
    with ShardWriter(target) as writer:
        for item in job.items:
            result = _transcode_or_failure(item, config)
            if isinstance(result, MediaError):
                rows.append(_row(item, result.source, FAILED, str(result), None))
                continue
            writer.write(result.sample)
            rows.append(_row(item, result.source, OK, None, job.name, result.sample.meta.duration_s,
                             result.decode_errors))
            if item.stats_rank is not None:
                video_sum, video_sumsq, video_frames = fbank_moments(result.sample.fbank)
                moments[item.key] = (video_sum.tolist(), video_sumsq.tolist(), video_frames)
        writer.close()
        record = ShardRecord(job.name, job.split, writer.samples, writer.partial.stat().st_size,
                             sha256_of(writer.partial))
        part = ShardPart(record, rows, moments)
        write_part(config.manifest_dir, part)
        writer.commit()
    return part

