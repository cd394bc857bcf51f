"""Writer stage: a WebDataset tar written under a temporary name and renamed only when complete."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from types import TracebackType

import webdataset as wds

from pipeline.schema import Sample, encode_sample

_FIXED_MTIME = 0.0  # fixed member times make shard bytes reproducible


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ShardWriter:
    """Writes samples to ``<final>.tmp-<id>``; :meth:`commit` renames it to ``final``; else it is removed."""

    def __init__(self, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        self.final = final
        self.partial = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")
        self._handle = self.partial.open("wb")
        self._tar = wds.TarWriter(self._handle, mtime=_FIXED_MTIME)
        self.samples = 0

    def write(self, sample: Sample) -> None:
        """Append one sample."""
        self._tar.write(encode_sample(sample))
        self.samples += 1

    def close(self) -> None:
        """Finish the tar stream and flush it to disk (still under the temporary name)."""
        self._tar.close()
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def commit(self) -> None:
        """Make the finished shard visible under its final name."""
        os.replace(self.partial, self.final)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if not self._handle.closed:
            self._handle.close()
        self.partial.unlink(missing_ok=True)


def remove_partials(folder: Path) -> int:
    """Delete temporary files left by an interrupted run; returns how many were removed."""
    removed = 0
    for path in folder.glob(".*.tmp-*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
