"""The final manifest tables (driver side only: workers never import pandas)."""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from avts import storage
from pipeline.manifest import ShardPart, ShardRecord, VideoRow


def write_tables(
    manifest_dir: str | Path, parts: list[ShardPart], extra_rows: list[VideoRow]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``videos.parquet`` (all parts' rows plus ``extra_rows``) and ``shards.parquet`` into the folder or
    URL ``manifest_dir``, each atomically; return both."""
    rows = [row for part in parts for row in part.videos] + extra_rows
    videos = pd.DataFrame([asdict(row) for row in rows], columns=[f for f in VideoRow.__dataclass_fields__])
    shards = pd.DataFrame(
        [asdict(part.record) for part in parts], columns=[f for f in ShardRecord.__dataclass_fields__]
    )
    videos = videos.sort_values("key", kind="stable").reset_index(drop=True)
    for table, name in ((videos, "videos.parquet"), (shards, "shards.parquet")):
        buffer = io.BytesIO()  # the tables are small (a row per video)
        table.to_parquet(buffer, index=False)
        storage.write_bytes_atomic(storage.join(manifest_dir, name), buffer.getvalue())
    return videos, shards
