"""How a shard folder and its manifest folder name each other (written by `avts-ingest`, read by every tool).

The shard folder holds ``.avts-shards.json`` naming its manifest folder; the manifest folder's
``ingest.json`` names its shard folder. Both paths are relative (the folders may move together, e.g. to
another machine), and both files hold the content settings the shards were made with.

Folders may be local paths or URLs (``s3://bucket/run/shards``): the files are read through
:mod:`avts.storage`. Between two URLs of one bucket (or host) the recorded path is relative as well; between
places that share no root (a local folder and a bucket, two buckets) it is the other folder's full URL or path.
"""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from typing import Any

from avts import storage

MARKER = ".avts-shards.json"
SETTINGS_FILE = "ingest.json"
STATS_FILE = "stats.json"


def read_json(location: str | Path) -> dict[str, Any] | None:
    """The JSON object at ``location`` (a path or URL), or None when it is missing or not a JSON object.

    A remote location that cannot be read for another reason (credentials, network) raises the error.
    """
    try:
        data = json.loads(storage.read_text(location))
    except FileNotFoundError:
        return None
    except OSError:
        if storage.is_remote(location):
            raise
        return None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _root_and_path(url: str) -> tuple[str, str]:
    """``s3://bucket/run/shards`` → (``s3://bucket``, ``/run/shards``)."""
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme.lower()}://{host}", "/" + path.strip("/")


def relative(target: str | Path, start: str | Path) -> str:
    """``target`` as seen from the folder ``start``: a relative path when both are local folders or both lie
    in one bucket (or on one host), else ``target`` in full."""
    target, start = str(target), str(start)
    if not storage.is_remote(target) and not storage.is_remote(start):
        return Path(os.path.relpath(Path(target).resolve(), Path(start).resolve())).as_posix()
    if storage.is_remote(target) and storage.is_remote(start):
        (target_root, target_path), (start_root, start_path) = _root_and_path(target), _root_and_path(start)
        if target_root == start_root:
            return posixpath.relpath(target_path, start_path)
    return target if storage.is_remote(target) else str(Path(target).resolve())


def locate(folder: str | Path, recorded: str) -> str:
    """The folder that ``recorded`` (a value :func:`relative` gave, as seen from ``folder``) names."""
    if storage.is_remote(recorded) or (storage.is_remote(folder) and Path(recorded).is_absolute()):
        return recorded
    if not storage.is_remote(folder):
        return str(Path(folder) / recorded)
    root, path = _root_and_path(str(folder))
    return root + posixpath.normpath(posixpath.join(path, recorded))


def manifests_of(shard_folder: str | Path) -> str | None:
    """The manifest folder a shard folder's marker names, or None without a marker."""
    marker = read_json(storage.join(shard_folder, MARKER))
    if marker is None or not isinstance(marker.get("manifests"), str):
        return None
    return locate(shard_folder, marker["manifests"])


def describes(manifests: str | Path, shard_folder: str | Path) -> bool | None:
    """Whether ``manifests`` describe ``shard_folder`` (None when the manifests do not say)."""
    record = read_json(storage.join(manifests, SETTINGS_FILE))
    if record is None or not isinstance(record.get("shards"), str):
        return None
    return record["shards"] == relative(shard_folder, manifests)
