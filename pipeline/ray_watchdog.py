"""``python -m pipeline.ray_watchdog DRIVER_PID``: kill an embedded Ray when its driver dies.

Started detached (its own session) by :func:`pipeline.ray_start.start_watchdog` before ``ray.init``, so a driver
killed while its Ray is still starting takes it along too. While the driver lives it notes, a few times a
second, the driver's descendants and the Ray session directories named on their command lines (the GCS server's
``--log_dir``, the raylet's socket paths: unique to one ``ray.init``). When the driver ends it kills what
belonged to that Ray: the descendants it last saw, and every process holding a file open under one of those
session directories (workers started after the last look, agents whose parent died). Nothing else on the
machine is touched, so another user's Ray cluster on the same host is safe. SIGTERM means the driver has shut
its Ray down: the watchdog then kills only what is left under the session directories and exits. Linux only
(``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

STARTING_TICK_S = 0.2  # how often the driver's descendants are noted while no Ray session is known...
TICK_S = 1.0  # ... and once one is (its directory then finds the processes started since)
SESSION_DIR = re.compile(rb"(/[^\x00=]*/session_[^/\x00]+)/")  # as Ray names them: <temp dir>/session_<date>_<pid>


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


def session_dirs(pids: set[int]) -> set[str]:
    """The Ray session directories named on the command lines of ``pids``."""
    found: set[str] = set()
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        found.update(os.fsdecode(match) for match in SESSION_DIR.findall(command))
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


def wait_for_exit(pid: int, on_tick: Callable[[], float]) -> None:
    """Return when ``pid`` has ended, calling ``on_tick`` meanwhile, again after the seconds it returns."""
    tick_s = on_tick()
    try:
        handle = os.pidfd_open(pid)
    except OSError:  # kernels before 5.3: poll
        while alive(pid):
            time.sleep(tick_s)
            tick_s = on_tick()
        return
    while not select.select([handle], [], [], tick_s)[0]:
        tick_s = on_tick()


class DriverDone(Exception):
    """SIGTERM from the driver: it has shut its Ray down and goes on without it."""


def driver_done(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: stop watching."""
    raise DriverDone


def main() -> None:
    """Watch the driver, then kill its Ray session: all of it when the driver dies; when the driver says it is
    done with Ray (SIGTERM, after ``ray.shutdown``), what is left of the session only (e.g. agents that an
    interrupted shutdown left running), since the driver's other children are none of our business."""
    driver = int(sys.argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, driver_done)
    seen: set[int] = set()
    sessions: set[str] = set()

    def remember() -> float:
        found = descendants(driver)
        seen.update(found)
        sessions.update(session_dirs(found))
        return TICK_S if sessions else STARTING_TICK_S

    try:
        wait_for_exit(driver, remember)
    except DriverDone:
        seen = set()
    me = os.getpid()
    for _ in range(3):  # a few rounds: a raylet may still start a worker while we kill
        victims = (seen | {pid for session in sessions for pid in using(session)}) - {me, driver}
        seen = set()
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not victims:
            return
        time.sleep(0.3)


if __name__ == "__main__":
    main()
