"""``python -m pipeline.ray_watchdog DRIVER_PID SESSION_DIR``: kill an embedded Ray when its driver dies.

Started detached (its own session) by :func:`pipeline.ray_start.start_watchdog`. It waits for the driver
process to end, then kills what belonged to that Ray: the driver's descendants it last saw, and every
process holding a file open under the session's own directory (unique to one ``ray.init``). Nothing else
on the machine is touched, so another user's Ray cluster on the same host is safe. Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path


def parents() -> dict[int, int]:
    """pid → parent pid of every live process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                found[int(entry.name)] = int(fields[1])
    return found


def descendants(root: int) -> set[int]:
    """Every live descendant of ``root``."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def using(folder: str) -> set[int]:
    """Processes with a file open under ``folder``."""
    found = set()
    prefix = folder.rstrip("/") + "/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith(prefix) for link in links):
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def wait_for_exit(pid: int, on_tick: Callable[[], None]) -> None:
    """Return when ``pid`` has ended, calling ``on_tick`` about once a second meanwhile."""
    try:
        handle = os.pidfd_open(pid)
    except OSError:  # kernels before 5.3: poll
        while alive(pid):
            on_tick()
            time.sleep(1.0)
        return
    while not select.select([handle], [], [], 1.0)[0]:
        on_tick()


def main() -> None:
    """Watch the driver, then kill its Ray session."""
    driver, session = int(sys.argv[1]), sys.argv[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    seen: set[int] = set()

    def remember() -> None:
        seen.update(descendants(driver))

    remember()
    wait_for_exit(driver, remember)
    me = os.getpid()
    for _ in range(3):  # a few rounds: a raylet may still start a worker while we kill
        victims = (seen | using(session)) - {me, driver}
        seen = set()
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not victims:
            return
        time.sleep(0.3)


if __name__ == "__main__":
    main()
