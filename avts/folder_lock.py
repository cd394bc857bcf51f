"""One job per folder: an exclusive ``flock`` on a lock file inside it, held while the job runs.

The kernel releases the lock when the holder's process ends, however it ends (a SIGKILL, a lost node), so a
lock is never stale; the file keeps the holder's process id for the message a second job gets. ``flock``
holds on local file systems; on network file systems it depends on their lock support.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class FolderLockError(Exception):
    """The folder cannot be held: another job holds it, or it cannot be made or written; the message says so."""


@contextlib.contextmanager
def hold(folder: Path, lock_name: str, tool: str, elsewhere: str) -> Iterator[None]:
    """Hold ``folder`` (created if needed) for ``tool`` by locking ``folder/lock_name``; refuse at once if another
    job holds it, saying so and ``elsewhere`` (what to do instead), and say what is wrong when the folder
    cannot be made or written (a file in the way, no permission)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / lock_name).open("a+")
    except FileExistsError:
        raise FolderLockError(f"{folder} is a file, not a folder: give an output folder") from None
    except NotADirectoryError:
        raise FolderLockError(f"{folder}: part of this path is a file, not a folder") from None
    except PermissionError as error:
        raise FolderLockError(f"cannot write in {folder}: permission denied ({error.filename})") from None
    except OSError as error:  # a read-only file system, a full disk, too long a name...
        raise FolderLockError(f"cannot write in {folder}: {error.strerror or error}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise FolderLockError(
                f"another {tool} (pid {holder}) is writing {folder}; wait for it to finish, or {elsewhere}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
