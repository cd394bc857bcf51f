"""The final manifest tables (driver side only: workers never import pandas)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from avts.atomic import atomic_path
from pipeline.manifest import ShardPart, ShardRecord, VideoRow


def write_tables(manifest_dir: Path, parts: list[ShardPart],
                 extra_rows: list[VideoRow]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``videos.parquet`` (all parts' rows plus ``extra_rows``) and ``shards.parquet``; return both."""
    rows = [row for part in parts for row in part.videos] + extra_rows
    videos = pd.DataFrame([asdict(row) for row in rows],
                          columns=[f for f in VideoRow.__dataclass_fields__])
    shards = pd.DataFrame([asdict(part.record) for part in parts],
                          columns=[f for f in ShardRecord.__dataclass_fields__])
    videos = videos.sort_values("key", kind="stable").reset_index(drop=True)
    manifest_dir.mkdir(parents=True, exist_ok=True)
    for table, name in ((videos, "videos.parquet"), (shards, "shards.parquet")):
        with atomic_path(manifest_dir / name) as tmp:
            table.to_parquet(tmp, index=False)
    return videos, shards
