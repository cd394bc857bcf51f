"""How many CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

``os.cpu_count()`` counts the host's CPUs: in a container started with ``docker run --cpus 2`` (or a Kubernetes
CPU limit, or a Slurm job's cgroup) on a 64-core host it says 64, and a pool of 64 CPU-bound workers then
shares two CPUs' worth of time, each paying its start-up and memory for nothing. The quota is read as the
kernel applies it: cgroup v2 ``cpu.max`` (``"200000 100000"``: 2 CPUs; ``"max ..."``: none), cgroup v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota −1: none), at the process's own cgroup and every parent
(the smallest wins), and rounded up as the JVM and Go runtime do (2.5 CPUs → 3 workers).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> int:
    """CPUs this process may run on (affinity), no more than its cgroup quota allows; at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, self_cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (the smallest along its path), or None without one."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        parts = Path(path).relative_to("/").parts if path.startswith("/") else ()
        if controllers == "":  # cgroup v2 (alone, or the unified half of a hybrid set-up)
            for base in (cgroup_root, cgroup_root / "unified"):
                quotas += [_v2_quota(folder / "cpu.max") for folder in _up_to(base, parts)]
        elif "cpu" in controllers.split(","):  # cgroup v1: mounted under its controllers' name, or under cpu
            for base in dict.fromkeys((cgroup_root / controllers, cgroup_root / "cpu")):
                quotas += [_v1_quota(folder) for folder in _up_to(base, parts)]
    found = [quota for quota in quotas if quota is not None]
    return min(found) if found else None


def _up_to(base: Path, parts: tuple[str, ...]) -> list[Path]:
    """``base/parts…`` and each of its parents up to ``base``."""
    return [base.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_quota(cpu_max: Path) -> float | None:
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
