"""The final manifest tables, ``videos.parquet`` and ``shards.parquet`` (driver side only).

Their columns are the fields of :class:`~pipeline.manifest.VideoRow` and :class:`~pipeline.manifest.ShardRecord`,
with arrow types taken from the fields' annotations, so a column has the same type in every run (a column whose
values are all missing is still a string or number column, not a column of nulls).

Built from arrow buffers and written with pyarrow, without pandas: importing pandas costs the driver ~0.3 s, and
so does ``pa.array``, whose first call imports pandas to check whether it was given a pandas object (measured at
the start and at the end of every ``avts-ingest`` run, while the other cores idle).
"""

from __future__ import annotations

import io
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from avts import storage
from pipeline.manifest import ShardPart, ShardRecord, VideoRow

ARROW_TYPES = {str: pa.large_string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
NUMBER_LAYOUTS = {int: "<i8", float: "<f8"}  # as arrow stores int64 and float64: little-endian


def column_types(row_type: type) -> dict[str, tuple[type, bool]]:
    """Each field of a dataclass of plain fields → its type (a key of :data:`ARROW_TYPES`) and whether it may be
    None (annotated ``X | None``); TypeError for any other annotation."""
    columns = {}
    for name, hint in typing.get_type_hints(row_type).items():
        nullable = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] if nullable else [hint]
        if len(kinds) != 1 or kinds[0] not in ARROW_TYPES:
            raise TypeError(f"{row_type.__name__}.{name}: no arrow column type for {hint}")
        columns[name] = (kinds[0], nullable)
    return columns


def arrow_schema(row_type: type) -> pa.Schema:
    """The arrow schema of a dataclass of plain fields (see :func:`column_types`), in field order."""
    return pa.schema(
        pa.field(name, ARROW_TYPES[kind], nullable=nullable)
        for name, (kind, nullable) in column_types(row_type).items()
    )


def column_array(values: list[Any], kind: type) -> pa.Array:
    """``values`` (each a ``kind``, one of :data:`ARROW_TYPES`' keys, or None) as an arrow array made from its buffers
    (validity bitmap, then offsets and UTF-8 bytes for strings, bits for booleans, little-endian numbers)."""
    present = [value is not None for value in values]
    validity = pa.py_buffer(np.packbits(np.array(present, dtype=bool), bitorder="little").tobytes())
    if kind is str:
        # a lone surrogate (undecodable bytes of a file name in an error's text) is written as its escape, \udcXX
        encoded = [value.encode("utf-8", "backslashreplace") if value is not None else b"" for value in values]
        offsets = np.cumsum([0, *map(len, encoded)], dtype=np.int64)
        buffers = [validity, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(encoded))]
    elif kind is bool:
        bits = np.packbits(np.array([bool(value) for value in values], dtype=bool), bitorder="little")
        buffers = [validity, pa.py_buffer(bits.tobytes())]
    else:
        numbers = np.array([0 if value is None else value for value in values], dtype=NUMBER_LAYOUTS[kind])
        buffers = [validity, pa.py_buffer(numbers.tobytes())]
    array = pa.Array.from_buffers(ARROW_TYPES[kind], len(values), buffers, null_count=present.count(False))
    array.validate(full=True)
    return array


def rows_table(rows: list[Any], row_type: type) -> pa.Table:
    """The ``row_type`` dataclass instances ``rows`` as one arrow table of :func:`arrow_schema`'s schema."""
    columns = [
        column_array([getattr(row, name) for row in rows], kind) for name, (kind, _) in column_types(row_type).items()
    ]
    return pa.Table.from_arrays(columns, schema=arrow_schema(row_type))


def write_tables(
    manifest_dir: str | Path, parts: list[ShardPart], extra_rows: list[VideoRow]
) -> tuple[list[VideoRow], list[ShardRecord]]:
    """Write ``videos.parquet`` (all parts' rows plus ``extra_rows``, by key) and ``shards.parquet`` (one row per
    part) into the folder or URL ``manifest_dir``, each atomically; return their rows."""
    videos = sorted([row for part in parts for row in part.videos] + extra_rows, key=lambda row: row.key)
    shards = [part.record for part in parts]
    for rows, row_type, name in ((videos, VideoRow, "videos.parquet"), (shards, ShardRecord, "shards.parquet")):
        buffer = io.BytesIO()  # the tables are small (a row per video)
        pq.write_table(rows_table(rows, row_type), buffer)
        storage.write_bytes_atomic(storage.join(manifest_dir, name), buffer.getvalue())
    return videos, shards
