"""Reader stage: find input files, give them stable keys, labels and splits, and plan the shards.

Everything here is a pure function of the file list and the settings, so the same input gives the same
plan whatever the number of workers, and a rerun finds the same shards to resume.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avts.console import printable
from avts.schema import TEST, TRAIN, VAL, shard_name

if TYPE_CHECKING:
    from pipeline.splits import SplitTable

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_KEY_STEM_CHARS = 80


@dataclass(frozen=True)
class VideoItem:
    """One input file and where it goes."""

    key: str
    path: Path  # absolute path
    relpath: str  # relative to the source folder, POSIX separators
    label: str | None
    split: str
    stats_rank: int | None  # place in the seeded order of training videos for the stats subset; None for val


@dataclass(frozen=True)
class ShardJob:
    """The videos of one output shard: the unit of work handed to a worker."""

    name: str
    split: str
    items: tuple[VideoItem, ...]


@dataclass(frozen=True)
class Skipped:
    """Something under the source folder that is not ingested, and why."""

    relpath: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    """The files to ingest, and what was passed over."""

    files: list[Path]
    skipped: list[Skipped]


def display_path(path: Path, src: Path) -> str:
    """``path`` relative to ``src`` with POSIX separators, as valid text: bytes of a name that is not valid
    UTF-8 are shown as ``\\xNN`` escapes (the file itself is still opened by its real name)."""
    return printable(path.relative_to(src).as_posix())


def find_files(src: Path, exclude: tuple[Path, ...] = ()) -> Discovery:
    """All regular files under ``src``, recursively, sorted, following symlinked folders (once each).

    Passed over, and reported: hidden files and folders (names starting with ``.``), folders that cannot be
    read, a symlinked folder already visited (a loop), and the ``exclude`` folders (the output, when it lies
    inside the source).
    """
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist or is not a folder")
    excluded = {folder.resolve() for folder in exclude}
    visited: set[Path] = set()
    found: list[Path] = []
    skipped: list[Skipped] = []

    def unreadable(error: OSError) -> None:
        skipped.append(Skipped(display_path(Path(error.filename), src), f"unreadable folder: {error.strerror}"))

    for root, dirs, files in os.walk(src, onerror=unreadable, followlinks=True):
        here = Path(root)
        real = here.resolve()
        if real in visited:  # a symlink back to a folder already walked
            skipped.append(Skipped(display_path(here, src), "symlink loop: folder already visited"))
            dirs[:] = []
            continue
        visited.add(real)
        kept = []
        for name in sorted(dirs):
            folder = here / name
            if name.startswith("."):
                skipped.append(Skipped(display_path(folder, src), "hidden folder"))
            elif folder.resolve() in excluded:
                skipped.append(Skipped(display_path(folder, src), "the output folder"))
            else:
                kept.append(name)
        dirs[:] = kept
        for name in files:
            if name.startswith("."):
                skipped.append(Skipped(display_path(here / name, src), "hidden file"))
            else:
                found.append(here / name)
    return Discovery(sorted(found), sorted(skipped, key=lambda entry: entry.relpath))


def video_key(relpath: str) -> str:
    """A stable, unique, WebDataset-safe key for a relative path: readable stem plus a short hash.

    Keys hold only ``[A-Za-z0-9_-]`` (no dots, which WebDataset uses to split extensions, and no
    slashes), so non-ASCII names, spaces and nested folders are all safe.
    """
    stem = relpath.rsplit(".", 1)[0] if "." in Path(relpath).name else relpath
    readable = _UNSAFE.sub("_", stem).strip("_")[-_KEY_STEM_CHARS:] or "video"
    digest = hashlib.sha1(relpath.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


def label_of(relpath: str) -> str | None:
    """The class label: the first folder level under the source, or None for files directly in it."""
    parts = relpath.split("/")
    return parts[0] if len(parts) > 1 else None


def split_of(key: str, val_fraction: float) -> str:
    """Deterministic train/val split by key hash."""
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    return VAL if bucket < val_fraction else TRAIN


def stats_order(train_keys: list[str], seed: int) -> dict[str, int]:
    """A seeded random order of the training keys: the stats subset is the first ``fraction`` of the
    training videos *that were ingested*, in this order (so failed videos never leave it empty)."""
    ordered = sorted(train_keys)
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    return {ordered[index]: rank for rank, index in enumerate(permutation)}


def stats_subset_size(ingested_train_videos: int, fraction: float) -> int:
    """How many ingested training videos the normalization statistics use (at least one, if any)."""
    return min(ingested_train_videos, max(1, round(fraction * ingested_train_videos)))


class KeyCollision(ValueError):
    """Two files of the source would become samples with the same key."""


def plan_shards(
    src: Path, files: list[Path], shard_size: int, val_fraction: float, seed: int, splits: SplitTable | None = None
) -> list[ShardJob]:
    """Assign every file to a shard: train, val and test separately, in key order, ``shard_size`` per shard.

    The split is the key hash's (train or val), or with ``splits`` the split files' (train or test; the files
    they leave out are not planned).
    """
    entries = []
    for path in files:
        relpath = display_path(path, src)
        key = video_key(relpath)
        split = split_of(key, val_fraction) if splits is None else splits.split_of(relpath)
        if split is not None:
            entries.append((key, path.resolve(), relpath, label_of(relpath), split))
    duplicates = [key for key, count in Counter(entry[0] for entry in entries).items() if count > 1]
    if duplicates:
        names = [printable(entry[2]) for entry in entries if entry[0] in duplicates]
        raise KeyCollision(
            f"{len(names)} files map to the same sample key{'s' * (len(duplicates) > 1)} "
            f"({', '.join(sorted(duplicates)[:3])}): {', '.join(sorted(names)[:6])}; rename one of each"
        )
    order = stats_order([e[0] for e in entries if e[4] == TRAIN], seed)
    items = sorted(
        (VideoItem(key, path, rel, label, split, order.get(key)) for key, path, rel, label, split in entries),
        key=lambda item: item.key,
    )
    jobs: list[ShardJob] = []
    for split in (TRAIN, VAL, TEST):
        chosen = [item for item in items if item.split == split]
        for index, start in enumerate(range(0, len(chosen), shard_size)):
            jobs.append(ShardJob(shard_name(split, index), split, tuple(chosen[start : start + shard_size])))
    return jobs
