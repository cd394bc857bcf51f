"""The default worker count: the CPUs a process may use, a container's CPU quota included (cgroup v1 and v2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avts.cpus import cgroup_cpu_quota, usable_cpus
from pipeline.config import IngestConfig


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 'host' of 8 CPUs, all in this process's affinity mask."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)


def test_a_docker_cpus_2_container_gets_2_workers_not_the_hosts_8(tmp_path: Path, eight_cpus: None) -> None:
    write(tmp_path / "proc", "0::/\n")  # cgroup v2, in the container's own namespace
    write(tmp_path / "cg" / "cpu.max", "200000 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc") == 2.0
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 2


def test_the_smallest_quota_on_the_cgroup_path_wins_rounded_up(tmp_path: Path, eight_cpus: None) -> None:
    write(tmp_path / "proc", "0::/job/step\n")  # e.g. a Slurm job whose step has no limit of its own
    write(tmp_path / "cg" / "job" / "cpu.max", "250000 100000\n")
    write(tmp_path / "cg" / "job" / "step" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc") == 2.5
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 3


def test_cgroup_v1_quota_and_a_fraction_of_a_cpu(tmp_path: Path, eight_cpus: None) -> None:
    write(tmp_path / "proc", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    folder = tmp_path / "cg" / "cpu,cpuacct" / "docker" / "abc"
    write(folder / "cpu.cfs_quota_us", "50000\n")
    write(folder / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc") == 0.5
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 1


def test_no_quota_leaves_the_affinity_mask(tmp_path: Path, eight_cpus: None) -> None:
    write(tmp_path / "proc", "1:cpu:/\n0::/\n")
    write(tmp_path / "cg" / "cpu" / "cpu.cfs_quota_us", "-1\n")  # v1: unlimited
    write(tmp_path / "cg" / "cpu" / "cpu.cfs_period_us", "100000\n")
    write(tmp_path / "cg" / "unified" / "cpu.max", "max 100000\n")  # v2 half of a hybrid host: unlimited
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc") is None
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 8
    assert usable_cpus(tmp_path / "cg", tmp_path / "absent") == 8  # /proc/self/cgroup unreadable


def test_a_quota_never_raises_the_count_above_the_affinity_mask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # taskset -c 0,1
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "cg" / "cpu.max", "800000 100000\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 2


def test_the_ingest_default_workers_follow_the_affinity_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert IngestConfig(src=tmp_path, out=str(tmp_path / "shards")).workers == 1
