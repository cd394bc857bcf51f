"""Elastic multi-node training on one machine: two `torchrun` launchers ("nodes") on 127.0.0.1 that meet
through a c10d rendezvous (`--nnodes 2 --rdzv-backend c10d`), one gloo process each on the CPU.

- two nodes read the very data split of one node with two processes, and all ranks hold the same weights;
- a node killed mid-epoch (launcher, trainer and loader processes: SIGKILL) comes back as a new launcher
  (as a cluster scheduler would restart it); the job re-forms (`--max-restarts`), resumes from the last
  checkpoint (`--resume` is always on the command line) and ends with the weights of an uninterrupted run;
- ranks that resume from different checkpoints (a run folder that is not shared) stop with a clear error;
- resuming with another number of processes says that the run will not match an uninterrupted one.

Cost on the 2-core CI machine: ~3-4 min for the file (the kill test ~2 min, marked slow).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, torchrun_command
from tests.test_train import TINY, audit, records

# torch >= 2.4 lets the rank-0 launcher host the workers' store and caches its address across rendezvous
# rounds: a node that rejoins after a failure then waits forever for an address the survivor never publishes
# again (measured with torch 2.13: both launchers fail after 60 s). Without sharing, every round makes its own.
ELASTIC_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
MARKER = "AVTS_TEST_NODE"  # environment entry inherited by every process of a simulated node
SPLIT_ARGS = ("--epochs", "2", "--workers", "1", "--audit")


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_processes(marker: str) -> list[int]:
    """Every live process started for one simulated node (found by the environment entry they inherit, since
    torchrun starts its workers in sessions of their own)."""
    wanted = f"{MARKER}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if wanted in environ.split(b"\0"):
                found.append(int(entry))
    return found


@dataclass
class Node:
    """One `torchrun` launcher and its log."""

    name: str
    process: subprocess.Popen
    log: Path
    marker: str

    def text(self) -> str:
        """Everything the launcher and its workers printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    """Launchers of one elastic job (one rendezvous); :meth:`close` kills every process they started."""

    folder: Path
    port: int = field(default_factory=free_port)
    run_id: str = field(default_factory=lambda: f"avts-{uuid.uuid4().hex[:8]}")
    nodes: list[Node] = field(default_factory=list)

    def start(self, name: str, trainer_args: list[str], *, host: bool, cwd: Path = REPO, max_restarts: int = 3) -> Node:
        """Start one node: a launcher with one trainer process, restart-safe (``--resume``). ``host``: this
        launcher hosts the rendezvous store (the others connect to it)."""
        marker = f"{self.run_id}-{name}"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--nproc-per-node",
            "1",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{self.port}",
            "--rdzv-id",
            self.run_id,
            "--rdzv-conf",
            f"is_host={'true' if host else 'false'}",
            "--max-restarts",
            str(max_restarts),
            "--monitor-interval",
            "0.5",
            "-m",
            "trainer.cli",
            *trainer_args,
            "--resume",
        ]
        env = {
            **os.environ,
            **ELASTIC_ENV,
            "CI": "true",
            "OMP_NUM_THREADS": "1",
            MARKER: marker,
            "PYTHONPATH": str(REPO),
        }
        log = self.folder / f"{self.run_id}-{name}.log"
        with log.open("w") as handle:
            process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = Node(name, process, log, marker)
        self.nodes.append(node)
        return node

    def kill(self, node: Node) -> None:
        """What a node failure does: SIGKILL to all its processes at once (launcher first, so it restarts none)."""
        for _ in range(50):
            pids = sorted(node_processes(node.marker), key=lambda pid: pid != node.process.pid)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        node.process.wait()

    def wait(self, nodes: list[Node], timeout: float, what: str) -> list[int]:
        """Exit codes of ``nodes`` once all ended; a clear failure with their logs after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(node.process.poll() is not None for node in nodes):
                return [node.process.returncode for node in nodes]
            time.sleep(0.2)
        pytest.fail(f"{what}: still running after {timeout:.0f} s\n{self.logs(nodes)}")

    def logs(self, nodes: list[Node] | None = None) -> str:
        """The end of each node's log, for failure messages."""
        return "\n".join(f"--- {node.name} ---\n{node.text()[-2500:]}" for node in nodes or self.nodes)

    def close(self) -> None:
        """Kill whatever is left of every node."""
        for node in self.nodes:
            self.kill(node)


def trainer_args(shards: Path, out: Path | str, *extra: str) -> list[str]:
    """avts-train flags for a tiny CPU run."""
    return ["--shards", str(shards / "shards"), "--out", str(out), "--device", "cpu", *TINY, *extra]


def run_two_nodes(cluster: Cluster, args: list[str], timeout: float = 420) -> tuple[Node, Node]:
    """Start two nodes (the first hosts the rendezvous store) and wait until both end successfully."""
    first = cluster.start("A", args, host=True)
    second = cluster.start("B", args, host=False)
    codes = cluster.wait([first, second], timeout, "two-node run")
    assert codes == [0, 0], f"two-node run failed: exit codes {codes}\n{cluster.logs()}"
    return first, second


@pytest.fixture(scope="module")
def two_node_run(train_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A 2-epoch run of two nodes with one process each: (run folder, both logs)."""
    folder = tmp_path_factory.mktemp("two_nodes")
    cluster = Cluster(folder)
    try:
        nodes = run_two_nodes(cluster, trainer_args(train_shards, folder / "run", *SPLIT_ARGS))
        yield folder / "run", "\n".join(node.text() for node in nodes)
    finally:
        cluster.close()


def test_two_nodes_read_the_split_of_one_node_and_agree_on_weights(
    two_node_run: tuple[Path, str], train_shards: Path, tmp_path: Path
) -> None:
    out, logs = two_node_run
    assert "--resume: no checkpoint" in logs  # the restart-safe command starts a new run in an empty folder
    assert "avts-train 2 process(es)" in logs
    one_node = tmp_path / "one-node"
    command = torchrun_command(
        "trainer.cli",
        *trainer_args(train_shards, one_node, *SPLIT_ARGS),
    )
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=420, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        nodes, single = audit(out, rank), audit(one_node, rank)
        assert [r["epoch"] for r in nodes] == [r["epoch"] for r in single] == [0, 1]
        for got, expected in zip(nodes, single, strict=True):
            assert got["keys"] == expected["keys"]  # the same samples, in the same order, on the same rank
            assert got["steps"] == expected["steps"] > 0
            assert got["weights_sum"] == pytest.approx(expected["weights_sum"], rel=1e-9)
    for first, second in zip(audit(out, 0), audit(out, 1), strict=True):
        assert not set(first["keys"]) & set(second["keys"])  # the nodes read disjoint samples
        assert first["weights_sum"] == pytest.approx(second["weights_sum"], rel=1e-12)
        assert first["weights_abs_sum"] == pytest.approx(second["weights_abs_sum"], rel=1e-12)


@pytest.mark.slow
def test_killed_node_rejoins_and_the_run_ends_as_if_never_stopped(train_shards: Path, tmp_path: Path) -> None:
    # resampled epochs of 24 clips: 6 steps per rank and epoch, room to kill one mid-epoch
    extra = ("--epochs", "2", "--workers", "1", "--epoch-size", "24", "--ckpt-every", "1", "--audit")
    whole, broken = tmp_path / "whole", tmp_path / "killed"
    cluster = Cluster(tmp_path)
    try:
        run_two_nodes(cluster, trainer_args(train_shards, whole, *extra))
        args = trainer_args(train_shards, broken, *extra)
        first = cluster.start("A2", args, host=True)
        second = cluster.start("B2", args, host=False)
        last = broken / "checkpoints" / "last.pt"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait for a checkpoint in the middle of the second epoch
            assert first.process.poll() is None and second.process.poll() is None, (
                f"the run ended before a node could be killed mid-epoch\n{cluster.logs()}"
            )
            try:
                state = torch.load(last, weights_only=False)["state"] if last.exists() else None
            except Exception:  # replaced while being read: read it again
                state = None
            if state is not None and state["epoch"] == 1 and state["step_in_epoch"] >= 2:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"no mid-epoch checkpoint after 300 s\n{cluster.logs()}")
        cluster.kill(second)  # not the node hosting the rendezvous store: without it the job cannot re-form
        deadline = time.monotonic() + 120
        while "failed (exitcode" not in first.text():  # the survivor's trainer lost its peer (gloo)
            assert time.monotonic() < deadline, f"the surviving node did not notice the failure\n{cluster.logs()}"
            assert first.process.poll() is None, f"the surviving launcher gave up\n{cluster.logs()}"
            time.sleep(0.2)
        resumable = torch.load(last, weights_only=False)["state"]  # the newest checkpoint at the failure
        back = cluster.start("B3", args, host=False)  # the scheduler brings the node back
        codes = cluster.wait([first, back], 420, "the re-formed job")
        assert codes == [0, 0], f"the re-formed job failed: exit codes {codes}\n{cluster.logs()}"
        logs = first.text() + back.text()
    finally:
        cluster.close()
    assert (
        f"resuming at epoch 2, step {resumable['step_in_epoch']} of it (global step {resumable['global_step']})"
    ) in logs
    for rank in (0, 1):
        expected, got = audit(whole, rank), audit(broken, rank)
        assert [r["epoch"] for r in got] == [0, 1]
        assert got[-1]["global_step"] == expected[-1]["global_step"] == 12  # no lost or repeated steps
        assert got[-1]["weights_sum"] == pytest.approx(expected[-1]["weights_sum"], rel=1e-9)
        assert got[-1]["weights_abs_sum"] == pytest.approx(expected[-1]["weights_abs_sum"], rel=1e-9)
        # after the resume each rank read exactly the rest of its part of the epoch
        assert got[-1]["keys"] == expected[-1]["keys"][resumable["step_in_epoch"] * 2 :]
    assert [s["step"] for s in records(broken, "step")] == [s["step"] for s in records(whole, "step")]
    assert records(broken, "epoch")[-1]["train_loss"] == pytest.approx(
        records(whole, "epoch")[-1]["train_loss"], rel=1e-6
    )


def test_ranks_resuming_from_different_folders_stop_with_a_clear_error(
    two_node_run: tuple[Path, str], train_shards: Path, tmp_path: Path
) -> None:
    # "--out run" relative to each launcher's folder: a run folder on each node's local disk, not shared
    (tmp_path / "node-b").mkdir()
    shutil.copytree(two_node_run[0] / "checkpoints", tmp_path / "node-a" / "run" / "checkpoints")
    saved = torch.load(two_node_run[0] / "checkpoints" / "last.pt", weights_only=False)["state"]["global_step"]
    cluster = Cluster(tmp_path)
    try:
        args = trainer_args(train_shards, "run", "--epochs", "3", "--workers", "1")
        nodes = [
            cluster.start("A", args, host=True, cwd=tmp_path / "node-a", max_restarts=0),
            cluster.start("B", args, host=False, cwd=tmp_path / "node-b", max_restarts=0),
        ]
        codes = cluster.wait(nodes, 300, "ranks with different run folders")
    finally:
        cluster.close()
    assert codes[0] != 0 and codes[1] != 0
    logs = "".join(node.text() for node in nodes)
    assert "the ranks start from different checkpoints" in logs and f"at global step {saved}" in logs
    assert "at global step 0" in logs and "shared storage" in logs


def test_resuming_with_another_number_of_processes_says_the_run_will_differ(
    two_node_run: tuple[Path, str], train_shards: Path, tmp_path: Path
) -> None:
    out = tmp_path / "one-process"
    shutil.copytree(two_node_run[0], out)
    command = [
        sys.executable,
        "-m",
        "trainer.cli",
        *trainer_args(train_shards, out, "--epochs", "3", "--workers", "1", "--resume"),
    ]
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "written by 2 process(es) and this run has 1" in result.stderr
    assert [e["epoch"] for e in records(out, "epoch")] == [0, 1, 2]
