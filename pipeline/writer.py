"""Writer stage: WebDataset tar bytes, one sample at a time, joined into a shard published atomically.

Each sample becomes a run of tar members (``<key>.<ext>``, consecutive per sample) made by the standard
library's ``tarfile`` header code, so a sample can be encoded by the worker that transcoded it and the shard
assembled later from the pieces: the shard is byte-for-byte what ``tarfile`` writes for the same members.
Not ``webdataset.TarWriter``: importing webdataset imports torch, which costs every ingest worker ~1.5 s of
start-up for nothing (measured with ``python -X importtime``).
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from avts.schema import Sample, encode_sample

_OWNER = "avts"  # fixed owner and member times make shard bytes reproducible
_ENCODING = "utf-8"


def _padded(data: bytes) -> bytes:
    """``data`` followed by NULs up to a whole tar block."""
    remainder = len(data) % tarfile.BLOCKSIZE
    return data + (tarfile.NUL * (tarfile.BLOCKSIZE - remainder) if remainder else b"")


def sample_tar_bytes(sample: Sample) -> bytes:
    """The tar members of one sample (headers and padded contents), without the end-of-archive marker."""
    members = encode_sample(sample)
    key = members.pop("__key__")
    pieces = []
    for extension, data in members.items():
        info = tarfile.TarInfo(f"{key}.{extension}")
        info.size, info.mtime, info.mode = len(data), 0, 0o444
        info.uname = info.gname = _OWNER
        pieces.append(info.tobuf(tarfile.PAX_FORMAT, _ENCODING, "surrogateescape"))
        pieces.append(_padded(data))
    return b"".join(pieces)


def end_of_archive(length: int) -> bytes:
    """What ``tarfile`` appends when it closes an archive of ``length`` bytes: two zero blocks, then zeros up
    to a whole record."""
    end = length + 2 * tarfile.BLOCKSIZE
    remainder = end % tarfile.RECORDSIZE
    return tarfile.NUL * (2 * tarfile.BLOCKSIZE + (tarfile.RECORDSIZE - remainder if remainder else 0))


@dataclass(frozen=True)
class WrittenShard:
    """Size and checksum of a shard just written."""

    bytes: int
    sha256: str


def write_tar(path: Path, samples: Sequence[bytes]) -> WrittenShard:
    """Write a tar of the given sample pieces (from :func:`sample_tar_bytes`) to ``path``.

    Callers publish shards atomically by writing through :func:`avts.atomic.atomic_path`.
    """
    body = b"".join(samples)
    data = body + end_of_archive(len(body))
    path.write_bytes(data)
    return WrittenShard(len(data), hashlib.sha256(data).hexdigest())


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
