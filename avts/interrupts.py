"""Ctrl-C held off during work that must not be cut, or that native code would misreport if it were; SIGTERM taken
as Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT (Ctrl-C) off for the block, then deliver it to the handler that was in place before.

    For blocks that a KeyboardInterrupt raised at an arbitrary point would turn into another error: matplotlib's
    C++ transforms (pybind11) report one that arrives mid-call as ``TypeError: incompatible function arguments``,
    so a Ctrl-C while a run plotted its curves ended it with a traceback and exit status 1 instead of the one-line
    message and 130. Outside the main thread (where handlers cannot be set), or with SIGINT ignored, the block runs
    unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or previous is None:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM (``kill``, ``docker stop``, a scheduler's preemption) is Ctrl-C: it is raised again as
    SIGINT, so it ends the command as Ctrl-C does (workers stopped, temporary files removed, one line, status
    130), and waits as Ctrl-C does where :func:`interrupts_deferred` holds it off. Unchanged outside the main
    thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back from this thread meanwhile, and from the processes it starts from their first
    instruction (the mask is inherited): a worker still importing would print a traceback of its own. A Ctrl-C
    that comes meanwhile is delivered here afterwards, not lost."""
    held = hasattr(signal, "pthread_sigmask")
    if held:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
