"""A real multi-node Ray cluster on one machine, for tests: one ``ray start`` (its own raylet) per node.

Each node is started in its own process group with every port chosen here, so two raylets coexist and one
node can be killed as a whole (``killpg``, plus its workers, which Ray 2.60 puts in groups of their own)
without touching the other or any other Ray on the machine (never ``ray stop``). Token authentication is
on with a random token passed in the environment. Health checks are fast, so a dead node is noticed in
about a second instead of ~13 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}


FIXED_PORTS = range(23000, 32000)  # below Linux's ephemeral range (32768-60999), above the nodes' worker ports


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free now, outside the kernel's ephemeral range: a port the kernel handed out
    (bind to port 0) could be handed out again, to any process's outgoing connection, before Ray binds it (seen in
    CI: a raylet aborted on "Failed to add any wildcard listeners" for such a port)."""
    found: list[int] = []
    start = random.randrange(len(FIXED_PORTS))
    for offset in range(len(FIXED_PORTS)):
        port = FIXED_PORTS[(start + offset) % len(FIXED_PORTS)]
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError(f"fewer than {count} free ports in {FIXED_PORTS}")


def parents() -> dict[int, int]:
    """pid → (parent pid, process group) of every live process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if fields[0] != "Z":
                    found[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return found


def tree(group: int) -> set[int]:
    """The processes of a process group and all their descendants."""
    table = parents()
    members = {pid for pid, (_, pgid) in table.items() if pgid == group}
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in table.items() if parent in members} - members
        members |= more
        grew = bool(more)
    return members


@dataclass
class Node:
    """One ``ray start`` node."""

    name: str
    group: int
    seen: set[int] = field(default_factory=set)  # its processes, remembered (workers outlive their raylet)

    def processes(self) -> set[int]:
        """Its live processes."""
        self.seen |= tree(self.group)
        live = parents()
        return {pid for pid in self.seen if pid in live}


class LocalRayCluster:
    """Head and worker nodes on this machine; use as a context manager (everything is killed at exit)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder  # short: Ray's unix socket paths are limited to 107 bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
        self.env.update(
            {
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": secrets.token_hex(32),
                "RAY_USAGE_STATS_ENABLED": "0",
                **FAST_HEALTH_CHECKS,
            }
        )
        self.nodes: list[Node] = []
        self.address = ""
        self._worker_ports = 21000

    def start(self, name: str, cpus: int, resources: dict[str, float] | None = None) -> Node:
        """Start the head (first call) or a node joining it."""
        manager, objects, agent, agent_http, runtime_env, metrics = free_ports(6)
        args = [
            RAY,
            "start",
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(cpus),
            "--object-store-memory",
            str(100 * 2**20),
            "--node-manager-port",
            str(manager),
            "--object-manager-port",
            str(objects),
            "--dashboard-agent-grpc-port",
            str(agent),
            "--dashboard-agent-listen-port",
            str(agent_http),
            "--runtime-env-agent-port",
            str(runtime_env),
            "--metrics-export-port",
            str(metrics),
            "--min-worker-port",
            str(self._worker_ports),
            "--max-worker-port",
            str(self._worker_ports + 99),
            "--disable-usage-stats",
        ]
        self._worker_ports += 100
        if resources:
            args += ["--resources", json.dumps(resources)]
        if not self.nodes:
            gcs, client = free_ports(2)
            args += [
                "--head",
                "--port",
                str(gcs),
                "--include-dashboard=false",
                "--ray-client-server-port",
                str(client),
                "--temp-dir",
                str(self.folder / "ray"),
            ]
        else:
            args += ["--address", self.address]
        log = self.folder / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                args,
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        node = Node(name, process.pid)
        self.nodes.append(node)
        if process.wait(timeout=120) != 0:
            raise RuntimeError(f"`ray start` of {name} failed:\n{log.read_text()[-3000:]}")
        if len(self.nodes) == 1:
            found = re.search(r"ray start --address='([^']+)'", log.read_text())
            self.address = found.group(1) if found else f"127.0.0.1:{gcs}"
        node.processes()
        return node

    def wait_for_cpus(self, cpus: int, timeout: float = 120) -> None:
        """Wait until the cluster's scheduler counts ``cpus`` CPUs (every started node registered and reporting):
        on a loaded box a node that `ray start` has started can take a while to be seen."""
        deadline = time.monotonic() + timeout
        while True:
            status = subprocess.run(
                [RAY, "status", "--address", self.address], env=self.env, capture_output=True, text=True, timeout=60
            )
            if f"/{cpus}.0 CPU" in status.stdout:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster never counted {cpus} CPUs:\n{status.stdout[-2000:]}")
            time.sleep(0.5)

    def kill(self, node: Node) -> None:
        """SIGKILL one node: its raylet, agents and workers."""
        for _ in range(3):
            victims = node.processes()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.group, signal.SIGKILL)
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            if not node.processes():
                return
        raise RuntimeError(f"node {node.name} survived SIGKILL: {node.processes()}")

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *error: object) -> None:
        for node in reversed(self.nodes):
            self.kill(node)
