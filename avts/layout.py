"""How a shard folder and its manifest folder name each other (written by `avts-ingest`, read by every tool).

The shard folder holds ``.avts-shards.json`` naming its manifest folder; the manifest folder's
``ingest.json`` names its shard folder. Both paths are relative (the folders may move together, e.g. to
another machine), and both files hold the content settings the shards were made with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MARKER = ".avts-shards.json"
SETTINGS_FILE = "ingest.json"
STATS_FILE = "stats.json"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def relative(target: Path, start: Path) -> str:
    """``target`` as seen from the folder ``start``."""
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def manifests_of(shard_folder: Path) -> Path | None:
    """The manifest folder a shard folder's marker names, or None without a marker."""
    marker = read_json(shard_folder / MARKER)
    if marker is None or not isinstance(marker.get("manifests"), str):
        return None
    return shard_folder / marker["manifests"]


def describes(manifests: Path, shard_folder: Path) -> bool | None:
    """Whether ``manifests`` describe ``shard_folder`` (None when the manifests do not say)."""
    record = read_json(manifests / SETTINGS_FILE)
    if record is None or not isinstance(record.get("shards"), str):
        return None
    return record["shards"] == relative(shard_folder, manifests)
