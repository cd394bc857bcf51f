"""The official train/test split files of UCF101 and HMDB51, read into a split for every source video.

UCF101 (``ucfTrainTestlist/``): ``trainlist0N.txt`` holds lines ``Class/v_Class_gGG_cCC.avi <class index>``
and ``testlist0N.txt`` lines ``Class/v_Class_gGG_cCC.avi``. HMDB51 (``testTrainMulti_7030_splits/``): one
``<class>_test_splitN.txt`` per class, lines ``<file>.avi <id>`` with id 1 = train, 2 = test, 0 = not used.
Pass all the files of one split number (two for UCF101, 51 for HMDB51); files of different split numbers
or of both data sets together are refused, so train and test videos of different splits never mix.

A file found under the ingest source matches a listed video by its file name without the extension,
ignoring case: videos may have been re-encoded to another container, HMDB51's lists name flat files that
sit in class folders, and UCF101's own lists write ``HandStandPushups`` where the folder and the files say
``HandstandPushups``. Where several listed videos share a name, the file's folder decides. Files that no
list names, or that HMDB51 marks 0, are not ingested: each gets a manifest row with status ``skipped`` and
the reason.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from avts.schema import TEST, TRAIN
from pipeline.discover import display_path, label_of, video_key
from pipeline.manifest import VideoRow, skipped_row

NOT_LISTED = "not in the split files"
UNUSED = "unused in the split files"  # HMDB51 id 0
AMBIGUOUS = "listed under several classes in the split files"

UCF101, HMDB51 = "UCF101", "HMDB51"
_UCF_LIST = re.compile(r"^(train|test)list(\d+)\.txt$", re.IGNORECASE)
_HMDB_LIST = re.compile(r"^(.+)_test_split(\d+)\.txt$", re.IGNORECASE)
_HMDB_IDS = {"0": None, "1": TRAIN, "2": TEST}
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")


class SplitFileError(ValueError):
    """A split file cannot be used; the message names the file (and line) and says why."""


def name_key(path_text: str) -> str:
    """How a video is matched: its file name, without an extension, case-folded."""
    name = PurePosixPath(path_text.replace("\\", "/")).name
    return _EXTENSION.sub("", name).casefold()


@dataclass(frozen=True)
class Listing:
    """One video as a split file lists it."""

    split: str | None  # train, test, or None: listed as not used (HMDB51 id 0)
    folder: str | None  # the class folder the list gives (case-folded)
    origin: str  # "file:line", for messages


@dataclass(frozen=True)
class SplitTable:
    """Every listed video of one split of one data set, by :func:`name_key`."""

    dataset: str  # UCF101 or HMDB51
    number: int  # the split number (1, 2 or 3 for both data sets)
    listings: dict[str, tuple[Listing, ...]]

    def lookup(self, relpath: str) -> tuple[str | None, str | None]:
        """``(split, None)`` for a listed video, ``(None, reason)`` for a file to leave out."""
        found = self.listings.get(name_key(relpath), ())
        if len(found) > 1:
            folder = PurePosixPath(relpath).parent.name.casefold()
            found = tuple(listing for listing in found if listing.folder == folder)
            if len(found) != 1:
                return None, AMBIGUOUS
        if not found:
            return None, NOT_LISTED
        return (found[0].split, None) if found[0].split is not None else (None, UNUSED)

    def split_of(self, relpath: str) -> str | None:
        """The split of a file (train or test), or None when it is left out."""
        return self.lookup(relpath)[0]


def read_split_files(paths: Sequence[Path]) -> SplitTable:
    """Read the split files of one split of UCF101 or HMDB51 (see the module docstring)."""
    if not paths:
        raise SplitFileError("no split file given")
    kinds = {path: split_file_kind(path) for path in paths}
    datasets = {dataset for dataset, _ in kinds.values()}
    numbers = {number for _, number in kinds.values()}
    if len(datasets) > 1:
        raise SplitFileError("split files of UCF101 and HMDB51 given together; pass the files of one data set")
    if len(numbers) > 1:
        raise SplitFileError(
            f"split files of different splits ({', '.join(map(str, sorted(numbers)))}) given "
            "together: train and test videos of different splits would mix; pass one split's files"
        )
    collected: dict[tuple[str, str | None], Listing] = {}
    for path in paths:
        for key, listing in parse_split_file(path):
            earlier = collected.setdefault((key, listing.folder), listing)
            if earlier.split != listing.split:
                raise SplitFileError(
                    f"{listing.origin} puts {key!r} in {listing.split or 'unused'} but "
                    f"{earlier.origin} puts it in {earlier.split or 'unused'}"
                )
    listings: dict[str, list[Listing]] = defaultdict(list)
    for (key, _), listing in sorted(collected.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        listings[key].append(listing)
    return SplitTable(datasets.pop(), numbers.pop(), {key: tuple(found) for key, found in listings.items()})


def split_file_kind(path: Path) -> tuple[str, int]:
    """``(data set, split number)`` of a split file, told by its name as the data sets ship it."""
    if not path.is_file():
        raise SplitFileError(f"split file {path} does not exist")
    if (match := _UCF_LIST.match(path.name)) is not None:
        return UCF101, int(match.group(2))
    if (match := _HMDB_LIST.match(path.name)) is not None:
        return HMDB51, int(match.group(2))
    raise SplitFileError(
        f"{path} is not a split file: expected UCF101's trainlistNN.txt / testlistNN.txt or "
        "HMDB51's <class>_test_splitN.txt (the names the data sets ship them with)"
    )


def parse_split_file(path: Path) -> list[tuple[str, Listing]]:
    """The ``(name key, listing)`` of every line of one split file (blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise SplitFileError(f"{path} is not a text file ({error})") from None
    ucf = _UCF_LIST.match(path.name)
    hmdb = _HMDB_LIST.match(path.name)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        origin = f"{path.name}:{number}"
        split: str | None
        if ucf is not None:
            malformed = len(tokens) > 2 or (len(tokens) == 2 and not tokens[1].isdigit())
            if malformed or "/" not in tokens[0].replace("\\", "/"):
                raise SplitFileError(f"{origin}: expected 'Class/video.avi [class index]', got {line.strip()!r}")
            folder = PurePosixPath(tokens[0].replace("\\", "/")).parent.name.casefold()
            split = TRAIN if ucf.group(1).lower() == "train" else TEST
        elif hmdb is not None:
            if len(tokens) != 2 or tokens[1] not in _HMDB_IDS:
                raise SplitFileError(f"{origin}: expected 'video.avi 0|1|2', got {line.strip()!r}")
            folder, split = hmdb.group(1).casefold(), _HMDB_IDS[tokens[1]]
        else:
            raise SplitFileError(f"{path} is not a split file")
        rows.append((name_key(tokens[0]), Listing(split, folder, origin)))
    if not rows:
        raise SplitFileError(f"{path} lists no video")
    return rows


@dataclass(frozen=True)
class SplitReport:
    """How the files under the source met the split files."""

    counts: dict[str, int]  # files per split (train, test)
    skipped: list[VideoRow]  # manifest rows of the files left out
    not_found: int  # listed videos (train or test) that match no file

    def describe(self, table: SplitTable) -> str:
        """One line for the log."""
        reasons = Counter(row.reason for row in self.skipped)
        left_out = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items())) or "none"
        return (
            f"{table.dataset} split {table.number}: {self.counts.get(TRAIN, 0)} train and "
            f"{self.counts.get(TEST, 0)} test videos; files left out: {left_out}; "
            f"listed videos not found under the source: {self.not_found}"
        )


def match_files(src: Path, files: list[Path], table: SplitTable) -> SplitReport:
    """Match the files under ``src`` with the split files; an error when none matches (a wrong ``--src``?)."""
    counts: Counter[str] = Counter()
    skipped = []
    matched: set[str] = set()
    for path in files:
        relpath = display_path(path, src)
        split, reason = table.lookup(relpath)
        if split is None:
            skipped.append(skipped_row(relpath, reason or NOT_LISTED, video_key(relpath), label_of(relpath)))
            continue
        counts[split] += 1
        matched.add(name_key(relpath))
    if not counts:
        raise SplitFileError(
            f"none of the {len(files)} files under {src} is a train or test video of the "
            f"{table.dataset} split files (is --src the folder that holds the class folders?)"
        )
    listed = {key for key, found in table.listings.items() if any(f.split is not None for f in found)}
    return SplitReport(dict(counts), skipped, len(listed - matched))
