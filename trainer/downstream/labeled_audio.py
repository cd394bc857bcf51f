"""Labelled audio sets: ESC-50-style CSVs and folder-per-class trees, read into (path, label, fold) rows.

Supported layouts:

* **CSV with folds** (ESC-50 ``meta/esc50.csv``: ``filename, fold, target, category``). The label is
  ``category`` (else ``label``, else ``target``). Each file is found, in this order of precedence, at
  ``--audio-dir/<filename>``; at ``<CSV folder>/<audio_file>`` where an ``audio_file`` column exists
  (absolute paths are used as they are); else at ``<CSV folder>/../audio/<filename>`` (ESC-50's own
  ``ESC-50-master/meta/esc50.csv`` + ``ESC-50-master/audio/*.wav``).
* **CSV with a split column** (``split`` = ``train`` / ``test``, DCASE-style fixed split) instead of ``fold``.
* **Folder per class** (``--src DIR``, DCASE2014 style): every regular file below ``DIR/<class>/`` is
  one example; folds are assigned deterministically and stratified (see :func:`hashed_folds`). Hidden
  files are passed over; files directly in ``DIR`` are listed in ``skipped``.

A CSV row whose file does not exist is not an error: it is returned in ``LabeledSet.skipped``. A file listed in two
rows is (:class:`LayoutError`): counted twice, or under two labels, it would make the score meaningless.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from avts.seeds import stable_int
from pipeline.discover import find_files

Scheme = Literal["folds", "split"]
FOLDS: Scheme = "folds"
SPLIT: Scheme = "split"
TRAIN_SPLIT, TEST_SPLIT = "train", "test"
LABEL_COLUMNS = ("category", "label", "target")
DEFAULT_FOLDS = 5


class LayoutError(ValueError):
    """The labelled set cannot be read (missing columns, empty, unknown split values...)."""


@dataclass(frozen=True)
class LabeledFile:
    """One labelled audio file."""

    path: Path
    label: str
    fold: str  # a fold name ("1".."5") or, for the split scheme, "train" / "test"


@dataclass(frozen=True)
class Skipped:
    """A file left out of the probe, with the reason."""

    path: str
    reason: str


@dataclass
class LabeledSet:
    """The files of a labelled set, how to evaluate them, and the rows that had to be left out."""

    files: list[LabeledFile]
    scheme: Scheme
    skipped: list[Skipped] = field(default_factory=list)


def read_csv_layout(meta: Path, audio_dir: Path | None = None) -> LabeledSet:
    """Read an ESC-50-style metadata CSV (see the module docstring for columns and file locations)."""
    with meta.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        rows = list(reader)
    label_column = next((name for name in LABEL_COLUMNS if name in columns), None)
    scheme: Scheme = FOLDS if "fold" in columns else SPLIT
    file_columns = {"filename"} if audio_dir is not None else {"filename", "audio_file"}
    absent = [
        what
        for what, present in (
            ("label (category, label or target)", label_column is not None),
            ("fold or split", bool({"fold", "split"} & columns)),
            (" or ".join(sorted(file_columns)), bool(file_columns & columns)),
        )
        if not present
    ]
    if absent:
        raise LayoutError(f"{meta}: no {'; no '.join(absent)} column (columns: {', '.join(sorted(columns))})")
    if not rows:
        raise LayoutError(f"{meta}: no rows")
    fold_column = "fold" if scheme == FOLDS else "split"
    files, skipped = [], []
    first_row: dict[Path, int] = {}
    for number, row in enumerate(rows, start=1):
        path = _row_path(row, meta, audio_dir)
        label = (row.get(label_column) or "").strip()
        fold = (row.get(fold_column) or "").strip()
        if scheme == SPLIT:
            fold = fold.lower()
            if fold not in (TRAIN_SPLIT, TEST_SPLIT):
                raise LayoutError(
                    f"{meta}: split must be '{TRAIN_SPLIT}' or '{TEST_SPLIT}', got {fold!r} (row {number})"
                )
        elif fold and not fold.isdigit():  # a typo would become a fold of its own, scored and averaged
            raise LayoutError(f"{meta}: fold must be a whole number as in ESC-50 (1-5), got {fold!r} (row {number})")
        if path is None:
            reason = "no file name"
        elif not label or not fold:
            reason = f"no {label_column if not label else fold_column}"
        elif not path.is_file():
            reason = "file not found"
        elif path.resolve() in first_row:  # counted twice, or under two labels: the probe's score would mean nothing
            raise LayoutError(
                f"{meta}: rows {first_row[path.resolve()]} and {number} both list {path}; list each file once"
            )
        else:
            first_row[path.resolve()] = number
            files.append(LabeledFile(path, label, fold))
            continue
        skipped.append(Skipped(str(path) if path is not None else f"{meta} row {number}", reason))
    return LabeledSet(files, scheme, skipped)


def _row_path(row: dict[str, str], meta: Path, audio_dir: Path | None) -> Path | None:
    """Where the audio file of one CSV row lies (precedence: --audio-dir, audio_file column, ../audio/)."""
    filename = (row.get("filename") or "").strip()
    if audio_dir is not None:
        return audio_dir / filename if filename else None
    if (row.get("audio_file") or "").strip():
        return meta.parent / row["audio_file"].strip()  # an absolute audio_file replaces the CSV folder
    return meta.parent.parent / "audio" / filename if filename else None


def read_folder_layout(src: Path, folds: int = DEFAULT_FOLDS) -> LabeledSet:
    """Read a folder with one sub-folder per class; files get deterministic stratified folds ``1..folds``. More folds
    than the largest class has files would leave folds empty (fewer folds than asked): refused."""
    if folds < 2:
        raise LayoutError(f"--folds must be at least 2, got {folds}")
    found = find_files(src)
    skipped = [Skipped(str(src / item.relpath), item.reason) for item in found.skipped]
    by_class: dict[str, list[Path]] = defaultdict(list)
    for path in found.files:
        relative = path.relative_to(src)
        if len(relative.parts) > 1:
            by_class[relative.parts[0]].append(path)
        else:
            skipped.append(Skipped(str(path), "not in a class folder"))
    if not by_class:
        raise LayoutError(f"{src}: no files in class sub-folders")
    largest = max(by_class, key=lambda label: len(by_class[label]))
    if folds > len(by_class[largest]):
        raise LayoutError(
            f"--folds {folds}: the largest class ({largest}) has {len(by_class[largest])} files, so at most "
            f"{len(by_class[largest])} folds can hold any; ask for fewer folds"
        )
    files = []
    for label in sorted(by_class):
        names = [path.relative_to(src).as_posix() for path in by_class[label]]
        for path, fold in zip(by_class[label], hashed_folds(names, folds), strict=True):
            files.append(LabeledFile(path, label, fold))
    return LabeledSet(files, FOLDS, skipped)


def hashed_folds(names: list[str], folds: int) -> list[str]:
    """Folds ``"1".."folds"`` for the files of one class: ordered by a stable hash of the name, dealt round-robin.

    Deterministic (independent of listing order and machine) and stratified: the class's files are spread
    over the folds with counts differing by at most one.
    """
    order = sorted(range(len(names)), key=lambda i: (stable_int(names[i]), names[i]))
    assigned = [""] * len(names)
    for rank, index in enumerate(order):
        assigned[index] = str(rank % folds + 1)
    return assigned
