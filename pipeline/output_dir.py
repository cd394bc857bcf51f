"""The output folders: one job at a time, shards bound to their manifests, and nothing deleted that is not ours.

``avts-ingest`` writes two folders: the shards (``--out``) and the manifests (``--manifests``). It claims
them before it writes:

- a lock (``.avts-ingest.lock``, ``flock``) in each folder, held for the whole run: a second job writing the
  same folder is refused at once, with the first one's process id;
- a marker in the shard folder (``.avts-shards.json``) naming its manifest folder and the content settings,
  and the same facts the other way round in ``<manifests>/ingest.json``: a run whose manifests belong to
  other shards, or whose shards belong to other manifests or settings, is refused;
- only names this tool writes are ever removed: its shards (``NNNN.tar``, ``val-NNNN.tar``,
  ``test-NNNN.tar``) in a folder that carries its marker, and its temporary files. A shard folder holding
  other files is refused unless ``--allow-other-files`` (they are left alone); a ``README.md`` is fine.

Either folder may be a prefix on object storage (``s3://bucket/run/shards``): the marker, the settings file,
the listing and the removals go through :mod:`avts.storage`, so the binding and the settings guard hold there
too. A bucket cannot be locked: there, nothing stops a second job writing the same prefix (the run says so).
Temporary files left there are unfinished multipart uploads, which :func:`remove_temporaries` aborts.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avts import storage
from avts.atomic import is_temp_name, remove_partials
from avts.folder_lock import FolderLockError, hold
from avts.layout import MARKER, SETTINGS_FILE, locate, read_json, relative

SHARD_NAME = re.compile(r"^(?:val-|test-)?\d{4,}\.tar$")
LOCK = ".avts-ingest.lock"
TOLERATED = frozenset({"README.md"})
TOOL = "avts-ingest"


class OutputError(Exception):
    """The output folders cannot be used as asked; the message says why and what to do."""


def is_ours(name: str) -> bool:
    """Names this tool writes in a shard folder."""
    return bool(SHARD_NAME.match(name)) or is_temp_name(name) or name in (MARKER, LOCK)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold this tool's lock on ``folder`` (created if needed); refuse at once if another job holds it, and say
    what is wrong when the folder cannot be made or written."""
    try:
        with hold(folder, LOCK, TOOL, "write to another folder"):
            yield
    except FolderLockError as error:
        raise OutputError(str(error)) from None


def claim(
    out: str | Path, manifests: str | Path, settings: dict[str, Any], overwrite: bool, allow_other_files: bool
) -> bool:
    """Check that ``out`` and ``manifests`` (folders or URLs) may be written with ``settings``; record the binding.

    Returns whether ``out`` already carried this tool's marker (its shard-named files are then ours).
    Call it while holding the local folders' locks.
    """
    out, manifests = str(out), str(manifests)
    marker = read_json(storage.join(out, MARKER))
    record = read_json(storage.join(manifests, SETTINGS_FILE))
    if marker is not None and marker.get("manifests") != relative(manifests, out):
        named = locate(out, str(marker.get("manifests", "?")))
        raise OutputError(
            f"the shards in {out} belong to the manifests in {named}, not {manifests}: pass "
            f"--manifests {named}, or write to another --out"
        )
    if record is not None and record.get("shards") is not None and record["shards"] != relative(out, manifests):
        raise OutputError(
            f"the manifests in {manifests} describe the shards in "
            f"{locate(manifests, str(record['shards']))}, not {out}: pass another --manifests for "
            "these shards"
        )
    if not overwrite:
        for previous in (marker, record):
            if previous is not None and previous.get("settings", settings) != settings:
                old = previous["settings"]
                changed = sorted(k for k in set(settings) | set(old) if old.get(k) != settings.get(k))
                raise OutputError(
                    f"{out} holds shards made with other settings ({', '.join(changed)}); rerun with "
                    "the same settings to resume, or pass --overwrite to start over"
                )
    names = [storage.basename(entry) for entry in storage.listdir(out)]
    others = sorted(name for name in names if not is_ours(name) and name not in TOLERATED)
    if others and not allow_other_files:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise OutputError(
            f"{out} holds files that avts-ingest did not write ({shown}); choose an empty or new "
            "--out, or pass --allow-other-files (they are left alone)"
        )
    if marker is None and any(SHARD_NAME.match(name) for name in names):
        raise OutputError(
            f"{out} holds shard-named files that avts-ingest did not write (no {MARKER}); they would "
            "be overwritten: move them away or choose another --out"
        )
    write_json(storage.join(out, MARKER), {"tool": TOOL, "manifests": relative(manifests, out), "settings": settings})
    write_json(
        storage.join(manifests, SETTINGS_FILE), {"tool": TOOL, "shards": relative(out, manifests), "settings": settings}
    )
    return marker is not None


def write_json(location: str, content: dict[str, Any]) -> None:
    """Write a small JSON file (a path or URL) atomically."""
    storage.write_bytes_atomic(location, json.dumps(content, indent=2).encode("utf-8"))


def remove_own_shards(out: str | Path, keep: set[str]) -> list[str]:
    """Delete this tool's shards in ``out`` (a folder or URL) whose names are not in ``keep``; returns the names
    removed."""
    removed = []
    for entry in storage.listdir(out):
        name = storage.basename(entry)
        if SHARD_NAME.match(name) and name not in keep:
            storage.remove(entry)
            removed.append(name)
    return removed


def remove_temporaries(*folders: str | Path) -> int:
    """Delete this tool's temporary files (left by a killed worker or a full disk) in ``folders``; returns how
    many.

    On object storage: abort the unfinished multipart uploads under each prefix (a killed uploader leaves no
    object but keeps its parts, invisible and billed) and remove staged temporary names (backends without
    atomic uploads). Call it when no upload of this run is in progress: any unfinished upload is then a
    dead writer's.
    """
    removed = 0
    for folder in map(str, folders):
        if not storage.is_remote(folder):
            removed += remove_partials(Path(folder))
            continue
        removed += storage.abort_stale_uploads(folder, older_than_s=0)
        for entry in storage.listdir(folder):
            if is_temp_name(storage.basename(entry)):
                storage.remove(entry)
                removed += 1
    return removed
