"""Where the shards are: brace patterns, the ``<0000..2047>`` form, folders, list files and URLs.

URLs: ``pipe:`` commands are passed through as they are; object-store and HTTP(S) URLs (``s3://…``,
``http://…``) are expanded and listed through :mod:`avts.storage`, and object-store ones checked to exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import braceexpand

from avts import storage
from avts.layout import STATS_FILE, describes, manifests_of

_ANGLE_RANGE = re.compile(r"<(\d+)\.\.(\d+)>")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def is_url(spec: str) -> bool:
    """True for ``pipe:``, ``http(s):``, ``gs:`` and other scheme-prefixed sources that webdataset opens."""
    return bool(_URL.match(spec)) and not Path(spec).exists()


def expand_shards(spec: str, split: str = "train") -> list[str]:
    """Turn a shard specification into a list of shard paths or URLs.

    Accepts comma-separated parts, each one of: a brace pattern (``shards/{0000..2047}.tar``), the same with
    angle brackets (``shards/<0000..2047>.tar``), a folder (its ``NNNN.tar`` files for ``split="train"``,
    its ``val-NNNN.tar`` files for ``"val"``, its ``test-NNNN.tar`` files for ``"test"``), a text file listing
    one shard (path, pattern or URL, checked the same way) per line, or a URL:
    ``s3://bucket/shards/{0000..0099}.tar``, a prefix ``s3://bucket/shards/`` (listed like a folder),
    ``http://host/shards/{0000..0099}.tar`` and ``pipe:COMMAND`` (both not checked).
    Brace-expanded paths and object-store URLs that do not exist are an error, so a typo does not train on
    nothing (checked with one listing per folder).
    """
    shards: list[str] = []
    for part in filter(None, (p.strip() for p in split_top_level(spec))):
        shards.extend(_expand_one(part, split))
    if not shards:
        raise FileNotFoundError(f"no {split} shards found for {spec!r}")
    return shards


def split_top_level(spec: str) -> list[str]:
    """Split on commas that are not inside braces."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in spec:
        depth += (char == "{") - (char == "}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _expand_one(part: str, split: str) -> list[str]:
    part = _ANGLE_RANGE.sub(r"{\1..\2}", part)
    if is_url(part) and storage.protocol(part) == "pipe":
        return list(braceexpand.braceexpand(part))
    if is_url(part):
        return _expand_remote(part, split)
    path = Path(part)
    if path.is_dir():
        pattern = f"{split}-[0-9]*.tar" if split in ("val", "test") else "[0-9]*.tar"
        return [str(p) for p in sorted(path.glob(pattern))]
    if path.is_file() and path.suffix != ".tar":
        return _listed_shards(path, split)
    expanded = list(braceexpand.braceexpand(part))
    missing = [p for p in expanded if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) of {part!r} do not exist, e.g. {missing[0]}")
    return expanded


def _listed_shards(path: Path, split: str) -> list[str]:
    """The shards a list file names, one per line (``#`` comments), each checked as a part of its own is: a list
    naming a missing shard, or a file that is no list at all (a CSV, a video), is an error up front."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise FileNotFoundError(f"{path} is neither a .tar shard nor a text file listing shards") from None
    shards: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not (is_url(line) or line.endswith(".tar") or "{" in line or "<" in line):
            raise FileNotFoundError(
                f"{path}, line {number}: {line[:80]!r} names no shard (a .tar path, pattern or URL); "
                "--shards takes shards, folders of shards, patterns, or a text file listing shards"
            )
        shards.extend(_expand_one(line, split))
    return shards


def _expand_remote(part: str, split: str) -> list[str]:
    """An object-store or HTTP(S) part: a prefix/folder URL is listed, a brace pattern expanded and, on object
    stores, checked (HTTP URLs pass unchecked: a plain server cannot be listed, and a request per shard up front
    would cost more than the first read; a missing one is a warning when it is read)."""
    if "{" not in part and (part.endswith("/") or not part.endswith(".tar")):
        return storage.list_shards(part, split)
    expanded = storage.expand_braces(part)
    if storage.protocol(part) in ("http", "https"):
        return expanded
    missing = storage.missing(expanded)
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) of {part!r} do not exist, e.g. {missing[0]}")
    return expanded


def shard_folder(shards: list[str]) -> Path | None:
    """The local folder of the first shard, or None for URLs."""
    first = shards[0]
    return None if is_url(first) else Path(first).parent


def shard_location(shards: list[str]) -> str | None:
    """The folder (local path, or URL of an object-store prefix or HTTP folder) of the first shard; None for
    ``pipe:`` sources."""
    first = shards[0]
    if not is_url(first):
        return str(Path(first).parent)
    return None if storage.protocol(first) == "pipe" else storage.parent(first)


def default_val_spec(train_shards: list[str]) -> str | None:
    """``val-*.tar`` beside the training shards, if there are any (also in an object-store prefix, or an HTTP
    folder whose index page lists them)."""
    folder = shard_location(train_shards)
    if folder is None:
        return None
    if not is_url(folder):
        return folder if any(Path(folder).glob("val-[0-9]*.tar")) else None
    return folder if storage.list_shards(folder, "val") else None


def default_stats_path(train_shards: list[str]) -> Path | str | None:
    """The ``stats.json`` of the manifests the shard folder names (else ``manifests/`` beside it), if it
    exists; an error when those manifests say they describe other shards. A path for local shards, a URL for
    shards on object storage or HTTP."""
    folder = shard_location(train_shards)
    if folder is None:
        return None
    manifests = manifests_of(folder) or storage.join(storage.parent(folder), "manifests")
    candidate = storage.join(manifests, STATS_FILE)
    if not storage.exists(candidate):
        return None
    if describes(manifests, folder) is False:
        raise FileNotFoundError(
            f"{candidate} belongs to other shards than those in {folder} (see "
            f"{storage.join(manifests, 'ingest.json')}): pass the right --stats"
        )
    return candidate if is_url(candidate) else Path(candidate)
