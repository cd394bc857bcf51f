"""avts-ingest on Ray: the embedded Ray exposes nothing and dies with its driver; a real two-node cluster on
this machine shares the work, loses a node mid-run and still gives the same bytes; a wrong address fails fast.

The cluster is made of two ``ray start`` nodes (each its own raylet), with token authentication on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.ray_watchdog import alive, using
from tests.conftest import REPO, make_av_clip
from tests.ray_cluster import LocalRayCluster, free_ports, tree

ARGS = ["--shard-size", "2", "--val-fraction", "0", "--short-side", "64"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("ray") / "src"
    for index in range(16):
        make_av_clip(src / f"clip{index:02d}.mp4", 3.0, width=96, height=64, seed=index)
    return src


@pytest.fixture(scope="module")
def reference(clips: Path) -> dict[str, str]:
    """Shard digests of a run on the local process pool (the engines give the same bytes)."""
    out = clips.parent / "reference" / "shards"
    assert main(["--src", str(clips), "--out", str(out), "--engine", "processes", "--workers", "2", *ARGS]) == 0
    return digests(out)


def digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.tar"))}


def listeners(pids: set[int]) -> list[tuple[str, int]]:
    """(local address, pid) of the listening TCP sockets of ``pids`` (from /proc)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes[link[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                found.append((fields[1].rsplit(":", 1)[0], inodes[fields[9]]))
    return found


def is_loopback(hex_address: str) -> bool:
    """127.0.0.0/8 or ::1 (or ::ffff:127.x.x.x) in /proc/net's hexadecimal, host byte order."""
    if len(hex_address) == 8:
        return bytes.fromhex(hex_address)[::-1][0] == 127
    words = [bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, 32, 8)]
    raw = b"".join(words)
    return raw == bytes(15) + b"\x01" or (raw[:12] == bytes(10) + b"\xff\xff" and raw[12] == 127)


HOLD_RAY = """
import json, os, sys
from pipeline.config import IngestConfig
from pipeline.ray_engine import RayEngine
engine = RayEngine(IngestConfig(src=sys.argv[1], out=sys.argv[2], workers=2), {"OMP_NUM_THREADS": "1"})
print(json.dumps({name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}), flush=True)
sys.stdin.readline()  # hold Ray up until the test has looked
engine.close()
print("closed", flush=True)
"""


def test_embedded_ray_listens_on_loopback_only_with_a_token(clips: Path, tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
    driver = subprocess.Popen(
        [sys.executable, "-c", HOLD_RAY, str(clips), str(tmp_path / "shards")],
        cwd=REPO,
        env={**env, "HOME": str(tmp_path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        auth = json.loads(driver.stdout.readline())
        ray_processes = tree(driver.pid) - {driver.pid}
        sockets = listeners(ray_processes)
        assert len(sockets) >= 5  # gcs, raylet, agents, workers...
        assert [address for address, _ in sockets if not is_loopback(address)] == []
        assert auth["RAY_AUTH_MODE"] == "token" and len(auth["RAY_AUTH_TOKEN"]) == 64
        assert not (tmp_path / ".ray" / "auth_token").exists()  # the token stays in the environment
        driver.stdin.write("\n")
        driver.stdin.flush()
        assert driver.stdout.readline().strip() == "closed"
        deadline = time.monotonic() + 30
        while (left := {pid for pid in ray_processes if Path(f"/proc/{pid}").exists()}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, "Ray processes outlived ray.shutdown"
        assert driver.wait(timeout=30) == 0
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)


INTERRUPTED = "avts-ingest: interrupted; complete shards are kept; rerun the same command to resume where it stopped"


def ingest_driver(clips: Path, out: Path) -> subprocess.Popen[str]:
    """``avts-ingest`` on the embedded Ray as its own process (and process group), output captured."""
    command = [sys.executable, "-m", "pipeline.cli", "--src", str(clips), "--out", str(out), "--engine", "ray"]
    return subprocess.Popen(
        [*command, "--workers", "2", *ARGS],
        cwd=REPO,
        env={**os.environ, "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def seen_until_first_shard(driver: subprocess.Popen[str], out: Path) -> set[int]:
    """The driver's processes, looked at until its first shard appears."""
    deadline = time.monotonic() + 120
    seen: set[int] = set()
    while time.monotonic() < deadline and not list(out.glob("*.tar")):
        seen |= tree(driver.pid)
        assert driver.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.1)
    return seen | tree(driver.pid)


def command_line(pid: int) -> bytes:
    """A process's command line (NUL-separated), empty once it has ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def ray_session_processes(session: str) -> set[int]:
    """Live processes that name ``session`` on their command line or hold a file open under it."""
    named = {int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()}
    named = {pid for pid in named if session.encode() in command_line(pid)}
    return {pid for pid in named | using(session) if alive(pid)}


def assert_all_end(driver: subprocess.Popen[str], seen: set[int], session: str | None = None) -> None:
    """Within 15 s, none of ``seen`` (but the driver) is alive, nor anything of the Ray ``session``."""
    deadline = time.monotonic() + 15
    while (
        left := ({pid for pid in seen if alive(pid)} | (ray_session_processes(session) if session else set()))
        - {driver.pid}
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"{len(left)} Ray processes outlived their driver"


def test_a_killed_driver_takes_its_ray_along(clips: Path, tmp_path: Path) -> None:
    driver = ingest_driver(clips, tmp_path / "shards")
    try:
        seen = seen_until_first_shard(driver, tmp_path / "shards")
        assert any(b"raylet" in command_line(pid) for pid in seen), "no Ray started"
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone: its Ray must follow
        driver.wait(timeout=10)
        assert_all_end(driver, seen)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)


def ray_starting(driver: subprocess.Popen[str]) -> str:
    """Wait until ``driver``'s Ray is half started (its raylet and dashboard agent are up, ``ray.init`` has not
    returned); returns the Ray session's directory."""
    deadline = time.monotonic() + 120
    session, agents = None, False
    while not (session and agents) and time.monotonic() < deadline:
        assert driver.poll() is None, "the run ended before Ray started"
        for pid in tree(driver.pid):
            command = command_line(pid)
            if match := re.search(rb"(/[^\x00=]*/session_[^/\x00]+)/sockets/raylet", command):
                session = match.group(1).decode()
            agents = agents or command.startswith(b"ray::DashboardAgent")
        time.sleep(0.01)
    assert session is not None, "no raylet started"
    return session


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_driver_stopped_while_its_ray_starts_leaves_nothing(
    clips: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    """The worst moment: Ray's raylet and agents are starting and ``ray.init`` has not returned. SIGKILL: the
    watchdog (once started only after ``ray.init``) takes Ray along. SIGTERM: the run ends as Ctrl-C does (Ray's
    own handler, installed by ``ray.init``, used to exit with status 15 and leave the agents running). Ctrl-C: a
    clean stop too."""
    driver = ingest_driver(clips, tmp_path / "shards")
    try:
        session = ray_starting(driver)
        seen = tree(driver.pid)
        assert not any(b"ray::IDLE" in command_line(pid) for pid in seen), "Ray's workers had started already"
        os.kill(driver.pid, stop)
        output, _ = driver.communicate(timeout=60)
        if stop != signal.SIGKILL:
            assert driver.returncode == 130, output
            assert output.rstrip().endswith(INTERRUPTED)
            assert "Traceback" not in output
        assert_all_end(driver, seen, session)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)


def test_a_terminated_driver_stops_its_ray_cleanly_and_the_rerun_resumes(
    clips: Path, reference: dict[str, str], tmp_path: Path
) -> None:
    """SIGTERM (``kill``, ``docker stop``, a scheduler's preemption) during an embedded-Ray run: Ray's own SIGTERM
    handler (a C++ stack trace, then exit) does not replace avts-ingest's clean stop."""
    out = tmp_path / "shards"
    driver = ingest_driver(clips, out)
    try:
        seen = seen_until_first_shard(driver, out)
        os.kill(driver.pid, signal.SIGTERM)
        output, _ = driver.communicate(timeout=60)
        assert driver.returncode == 130, output
        assert output.rstrip().endswith(INTERRUPTED)
        assert "Traceback" not in output and "SIGTERM received" not in output
        assert_all_end(driver, seen)
        names = [p.name for p in out.iterdir()] + [p.name for p in (tmp_path / "manifests" / "parts").iterdir()]
        assert not [name for name in names if ".tmp-" in name]
        kept = len(list(out.glob("*.tar")))
        assert 1 <= kept < len(reference)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert main(["--src", str(clips), "--out", str(out), "--engine", "processes", "--workers", "2", *ARGS]) == 0
    assert digests(out) == reference


def test_an_address_where_no_ray_listens_fails_in_seconds(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (port,) = free_ports(1)
    started = time.monotonic()
    status = main(["--src", str(clips), "--out", str(tmp_path / "shards"), "--address", f"127.0.0.1:{port}", *ARGS])
    assert status == 1 and time.monotonic() - started < 30
    assert f"no Ray cluster at 127.0.0.1:{port}: connection refused" in " ".join(capsys.readouterr().err.split())


def test_a_stale_ray_address_variable_is_named_with_the_way_to_run_locally(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At default flags RAY_ADDRESS sends the run to Ray (as inside a Ray job); one left over from another job must
    not leave the user wondering why a one-machine run looks for a cluster."""
    (port,) = free_ports(1)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    assert main(["--src", str(clips), "--out", str(tmp_path / "shards"), *ARGS]) == 1
    message = " ".join(capsys.readouterr().err.split())
    assert f"no Ray cluster at 127.0.0.1:{port}: connection refused" in message
    assert f"RAY_ADDRESS=127.0.0.1:{port} is set; unset it, or pass --engine processes" in message
    assert main(["--src", str(clips), "--out", str(tmp_path / "shards"), "--engine", "processes", *ARGS]) == 0


def ingest_on(cluster: LocalRayCluster, clips: Path, out: Path) -> subprocess.Popen[str]:
    """avts-ingest joining the cluster (a separate driver process with the cluster's token)."""
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "--src",
        str(clips),
        "--out",
        str(out),
        "--address",
        cluster.address,
        "--workers",
        "2",
        *ARGS,
    ]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env={**cluster.env, "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_a_two_node_cluster_shares_the_work_and_survives_losing_a_node(
    clips: Path, reference: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = Path(f"/tmp/avts-rc{os.getpid()}")  # short: Ray's socket paths are limited to 107 bytes
    work = tmp_path_factory.mktemp("cluster")
    with LocalRayCluster(base) as cluster:
        cluster.start("head", cpus=1)
        second = cluster.start("second", cpus=1, resources={"second": 1})
        cluster.wait_for_cpus(2)  # once (CI, a loaded box) every shard went to the head: the second node unseen yet

        both = ingest_on(cluster, clips, work / "both" / "shards")
        output, _ = both.communicate(timeout=600)
        assert both.returncode == 0, output[-3000:]
        shards = pd.read_parquet(work / "both" / "manifests" / "shards.parquet")
        assert shards.node.nunique() == 2, shards[["shard", "node"]]  # both nodes wrote shards
        assert digests(work / "both" / "shards") == reference

        faulty = ingest_on(cluster, clips, work / "faulty" / "shards")
        deadline = time.monotonic() + 300
        while not list((work / "faulty" / "shards").glob("*.tar")):
            assert faulty.poll() is None, "the run ended before the node could be lost"
            assert time.monotonic() < deadline, "no shard appeared"
            time.sleep(0.05)
        cluster.kill(second)  # while shards are in flight
        output, _ = faulty.communicate(timeout=600)
        assert faulty.returncode == 0, output[-3000:]
        assert digests(work / "faulty" / "shards") == reference  # finished on the head, the same bytes
        videos = pd.read_parquet(work / "faulty" / "manifests" / "videos.parquet")
        assert (videos.status == "ok").all()
