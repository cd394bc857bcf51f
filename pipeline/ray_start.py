"""Starting Ray for ingest: an embedded local Ray that exposes nothing and dies with us, or a cluster joined
quickly and with clear errors.

Embedded (no ``--address``), measured with Ray 2.60 (details in ``docker/README.md``):

- every Ray listener binds 127.0.0.1 (by default 10 of 13 listen on all interfaces): set with
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's switch for a single-machine Ray; ``_node_ip_address``
  alone changes nothing; no dashboard;
- token authentication on, with a random token passed in the environment (Ray's default writes a
  world-readable ``~/.ray/auth_token``);
- the workers' environment (math libraries limited to their threads) is set before ``ray.init`` rather than
  as a ``runtime_env`` (which cost ~1 s on the first task);
- it starts in a thread of its own (:class:`EmbeddedRay`), which keeps Ray's SIGTERM handler out of the driver;
- a watchdog process, started before Ray, kills this Ray session's processes as soon as the driver dies (a
  SIGKILLed driver otherwise leaves the dashboard and runtime-env agents running for about a minute, and a
  rerun races them), and what an interrupted shutdown leaves of them;
- it stops in ~0.2 s instead of ~1.4 s (:func:`shutdown_quickly`).

Cluster (``--address`` or ``RAY_ADDRESS``): a TCP check first, so an address where nothing listens fails
in seconds instead of after Ray's ~14 minutes of retries, and Ray's own retries are bounded; a rejected
token says how to pass one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

from pipeline.distributor import environment

LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Bounds on joining a cluster (attempts, and seconds per attempt); Ray's defaults retry for ~14 minutes.
FAST_CONNECT = {
    "RAY_gcs_server_port_wait_time_s": "3",
    "RAY_py_gcs_connect_timeout_s": "5",
    "RAY_gcs_rpc_server_connect_timeout_s": "2",
}
TCP_TIMEOUT_S = 5.0
WATCHDOG_STOP_S = 10.0  # its clean-up takes at most ~1 s (three rounds of kills)


class RayUnreachable(ConnectionError):
    """The Ray cluster to join cannot be used; the message says why and what to do."""


def prepare_environment(address: str | None) -> None:
    """Settings Ray reads when it is imported, so call this before ``import ray``: an embedded Ray binds
    loopback and gets a fresh token in the environment (no token file); joining a cluster gets bounded
    connection retries."""
    if "ray" in sys.modules:
        return  # too late: Ray read them already (Ray's defaults then apply)
    if address:
        for name, value in FAST_CONNECT.items():
            os.environ.setdefault(name, value)
        return
    os.environ.update(LOOPBACK_ONLY)
    if not os.environ.get("RAY_AUTH_MODE"):
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})


@contextlib.contextmanager
def sigterm_handler_kept() -> Iterator[None]:
    """Keep this process's Python SIGTERM handler across ``ray.init``, which installs Ray's own (it logs a C++
    stack trace and exits, skipping the caller's clean-up, e.g. ``avts-ingest``'s removal of its temporary
    files)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(handler):
            signal.signal(signal.SIGTERM, handler)


class EmbeddedRay:
    """A local Ray bound to loopback that dies with this process; the constructor returns once it is up.

    ``ray.init`` runs in a thread of its own that lives until :meth:`stop` and shuts Ray down then:

    - Ray starts its processes with a parent-death signal, which Linux sends when the *thread* that started them
      ends, so that thread must outlive the run;
    - outside the main thread ``ray.init`` leaves the process's Python SIGTERM handler alone (its own exits at once
      with status 15, skipping the caller's clean-up), so ``kill`` during the start ends the run as Ctrl-C does;
      the C++ handler its core worker installs at the end is replaced by the caller's again;
    - the main thread waits for it interruptibly: Ctrl-C during the start stops it cleanly.
    """

    def __init__(self, ray: Any, cpus: int, worker_env: dict[str, str]) -> None:
        self._ray = ray
        self._watchdog = start_watchdog()  # first: a driver killed while Ray starts takes it along
        self._started = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(cpus, worker_env), name="avts-ray", daemon=True)
        try:
            with sigterm_handler_kept():  # Ray's core worker installs a C++ one (a stack trace, then exit)
                self._thread.start()
                self._started.wait()
            if self._error is not None:
                raise self._error
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Shut Ray down (after its start, if it is still starting); then the watchdog kills whatever an
        interrupted shutdown left of it, and ends."""
        self._stop.set()
        self._thread.join()
        stop_watchdog(self._watchdog)

    def _run(self, cpus: int, worker_env: dict[str, str]) -> None:
        try:
            with environment(worker_env), _without_thread_warning():
                self._ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except BaseException as error:  # raised again in the driver's thread
            self._error = error
            self._started.set()
            return
        self._started.set()
        self._stop.wait()
        shutdown_quickly(self._ray)


class _NotMainThreadFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "not the main thread" not in record.getMessage()


@contextlib.contextmanager
def _without_thread_warning() -> Iterator[None]:
    """Silence the warning ``ray.init`` logs when it is not called from the main thread (that is the point)."""
    logger = logging.getLogger("ray._private.worker")
    quiet = _NotMainThreadFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def shutdown_quickly(ray: Any) -> None:
    """``ray.shutdown()`` of a local Ray, less the second it waits for Ray's autoscaler monitor to obey SIGTERM
    (it never does, and is then killed): the monitor is killed first; it has nothing to save for a one-machine
    Ray. Uses Ray's private node object; where a Ray version has none, this is plain ``ray.shutdown()``."""
    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    for info in getattr(node, "all_processes", {}).get("monitor", []):
        info.process.kill()
    ray.shutdown()


def start_watchdog() -> subprocess.Popen[bytes] | None:
    """Start a detached process that kills this process's Ray session when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    command = [sys.executable, "-m", "pipeline.ray_watchdog", str(os.getpid())]
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    """Tell the watchdog its driver has shut Ray down (it kills what is left of the session) and wait for it."""
    if watchdog is None:
        return
    watchdog.terminate()
    try:
        watchdog.wait(timeout=WATCHDOG_STOP_S)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (optionally ``ray://``-prefixed or with a bracketed IPv6 host) → ``(host, port)``."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayUnreachable(f"Ray address must be auto or HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = TCP_TIMEOUT_S) -> None:
    """Fail at once, saying why, when nothing answers at ``address``."""
    host, port = split_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except socket.gaierror as error:
        raise RayUnreachable(f"Ray cluster {address}: cannot resolve {host!r} ({error})") from None
    except ConnectionRefusedError:
        raise RayUnreachable(
            f"no Ray cluster at {address}: connection refused (is `ray start --head --port {port}` running there?)"
        ) from None
    except TimeoutError:
        raise RayUnreachable(
            f"no Ray cluster at {address}: no answer within {timeout_s:.0f} s (host down, or a firewall in between)"
        ) from None
    except OSError as error:
        raise RayUnreachable(f"no Ray cluster at {address}: {error.strerror or error}") from None


def join_cluster(ray: Any, address: str, worker_env: dict[str, str]) -> None:
    """Join a running cluster; the workers get ``worker_env`` through Ray's runtime environment."""
    if address != "auto":
        check_reachable(address)
    try:
        with sigterm_handler_kept():
            ray.init(
                address=address, log_to_driver=False, configure_logging=False, runtime_env={"env_vars": worker_env}
            )
    except ConnectionError as error:
        cause = str(error.__cause__ or "")
        if "InvalidAuthToken" in cause or "Authentication" in cause:
            raise RayUnreachable(
                f"the Ray cluster at {address} rejected this driver: set RAY_AUTH_MODE=token and "
                "the cluster's token (RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN; `ray start --head` "
                "keeps it in ~/.ray/auth_token on the head)"
            ) from None
        lines = [line for line in cause.splitlines() if line.strip()]
        raise RayUnreachable(f"could not join the Ray cluster at {address}: {lines[-1] if lines else error}") from None
