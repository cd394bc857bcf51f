"""Where the shards are: brace patterns, the ``<0000..2047>`` form, folders, list files and URLs."""

from __future__ import annotations

import re
from pathlib import Path

import braceexpand

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
    one shard per line, or a URL.
    Brace-expanded local paths that do not exist are an error, so a typo does not train on nothing.
    """
    shards: list[str] = []
    for part in filter(None, (p.strip() for p in split_top_level(spec))):
        shards.extend(_expand_one(part, split))
    if not shards:
        raise FileNotFoundError(f"no {split} shards found for {spec!r}")
    return shards


def split_top_level(spec: str) -> list[str]:
    """Split on commas that are not inside braces."""
    parts, depth, current = [], 0, []
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
    if is_url(part):
        return list(braceexpand.braceexpand(part))
    path = Path(part)
    if path.is_dir():
        pattern = f"{split}-[0-9]*.tar" if split in ("val", "test") else "[0-9]*.tar"
        return [str(p) for p in sorted(path.glob(pattern))]
    if path.is_file() and path.suffix != ".tar":
        lines = (line.strip() for line in path.read_text().splitlines())
        return [line for line in lines if line and not line.startswith("#")]
    expanded = list(braceexpand.braceexpand(part))
    missing = [p for p in expanded if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) of {part!r} do not exist, e.g. {missing[0]}")
    return expanded


def shard_folder(shards: list[str]) -> Path | None:
    """The local folder of the first shard, or None for URLs."""
    first = shards[0]
    return None if is_url(first) else Path(first).parent


def default_val_spec(train_shards: list[str]) -> str | None:
    """``val-*.tar`` beside the training shards, if there are any."""
    folder = shard_folder(train_shards)
    if folder is None or not any(folder.glob("val-[0-9]*.tar")):
        return None
    return str(folder)


def default_stats_path(train_shards: list[str]) -> Path | None:
    """The ``stats.json`` of the manifests the shard folder names (else ``manifests/`` beside it), if it
    exists; an error when those manifests say they describe other shards."""
    folder = shard_folder(train_shards)
    if folder is None:
        return None
    manifests = manifests_of(folder) or folder.parent / "manifests"
    candidate = manifests / STATS_FILE
    if not candidate.exists():
        return None
    if describes(manifests, folder) is False:
        raise FileNotFoundError(f"{candidate} belongs to other shards than those in {folder} (see "
                                f"{manifests / 'ingest.json'}): pass the right --stats")
    return candidate
