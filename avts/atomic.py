"""Atomic files: whoever reads a path sees either the previous file or the whole new one, never a part.

Every file AVTS writes goes through here: shards, manifests, stats, checkpoints, metrics and plots. A file
is written under a hidden temporary name in the same folder (``.<name>.tmp-<id>``), flushed to disk, then
renamed over the final name. Only names of that form are ever cleaned up as leftovers (:func:`remove_partials`).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMP = re.compile(r"^\.(?P<final>.+)\.tmp-[0-9a-f]{32}$")


def temp_path(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path`` (``.<name>.tmp-<32 hex>``)."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")


def is_temp_name(name: str) -> bool:
    """True for names made by :func:`temp_path` (and nothing else)."""
    return _TEMP.match(name) is not None


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; on success it is synced and renamed into place.

    On an exception (a full disk, a kill signal turned into an exception) the temporary file is removed and
    ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_partials(folder: Path) -> int:
    """Delete the temporary files an interrupted writer left in ``folder``; returns how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if is_temp_name(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
