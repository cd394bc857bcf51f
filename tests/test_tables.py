"""The final manifest tables: every value written comes back, and every column has its declared type in every run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.manifest import FAILED, OK, ShardPart, ShardRecord, VideoRow
from pipeline.tables import arrow_schema, column_types, write_tables

OK_ROW = VideoRow(
    key="b_clip",
    path="b/clip.mp4",
    label="b",
    split="train",
    status=OK,
    reason=None,
    detail=None,
    duration_s=10.04,
    fps=25.0,
    width=340,
    height=256,
    has_audio=True,
    audio_sample_rate=44100,
    audio_channels=2,
    shard="0000.tar",
    in_stats_subset=True,
    source_bytes=2**40 + 7,  # beyond 32 bits
    stats_rank=3,
)


def test_every_value_comes_back_and_rows_are_sorted_by_key(tmp_path: Path) -> None:
    failed = replace(
        OK_ROW,
        key="a_café",
        path="a/café ünïcode.mp4",
        label=None,
        status=FAILED,
        reason="corrupt",
        detail="",
        duration_s=None,
        width=None,
        has_audio=None,
        shard=None,
        in_stats_subset=False,
        stats_rank=None,
        audio_gap_s=-0.5,
        truncated=True,
        audible=False,
    )
    record = ShardRecord("0000.tar", "train", 1, 12288, "ab" * 32, "host")
    videos, shards = write_tables(tmp_path, [ShardPart(record, [OK_ROW], {})], [failed])
    assert videos == [failed, OK_ROW] and shards == [record]
    read = pq.read_table(tmp_path / "videos.parquet")
    assert read.to_pylist() == [asdict(failed), asdict(OK_ROW)]
    assert read.schema == arrow_schema(VideoRow)
    assert pq.read_table(tmp_path / "shards.parquet").to_pylist() == [asdict(record)]


def test_a_column_keeps_its_type_when_all_its_values_are_missing_or_there_are_no_rows(tmp_path: Path) -> None:
    unlabeled = replace(OK_ROW, label=None, reason=None, detail=None, width=None)
    write_tables(tmp_path, [ShardPart(ShardRecord("0000.tar", "train", 1, 1, "00", "h"), [unlabeled], {})], [])
    schema = pq.read_schema(tmp_path / "videos.parquet")
    assert schema.field("label").type == pa.large_string() and schema.field("width").type == pa.int64()
    assert schema.field("label").nullable and not schema.field("key").nullable
    write_tables(tmp_path / "empty", [], [])
    assert pq.read_table(tmp_path / "empty" / "shards.parquet").schema == arrow_schema(ShardRecord)
    assert pq.read_table(tmp_path / "empty" / "videos.parquet").num_rows == 0


def test_text_that_is_not_valid_unicode_is_written_escaped_not_a_crash_at_the_end_of_the_run(tmp_path: Path) -> None:
    row = replace(OK_ROW, detail="cannot open caf\udce9.mp4")  # a lone surrogate: undecodable bytes of a name
    write_tables(tmp_path, [ShardPart(ShardRecord("0000.tar", "train", 1, 1, "00", "h"), [row], {})], [])
    assert pq.read_table(tmp_path / "videos.parquet").column("detail").to_pylist() == ["cannot open caf\\udce9.mp4"]


def test_a_field_without_a_column_type_is_refused() -> None:
    @dataclass
    class Odd:
        name: str
        tags: list[str]

    with pytest.raises(TypeError, match=r"Odd\.tags: no arrow column type"):
        column_types(Odd)
