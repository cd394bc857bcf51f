"""How every AVTS command reports a failure it understands (one red line, no traceback, exit status 1) and an
interruption (one line saying what is kept and how to go on, exit status 130)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

from avts.stats import StatsError

# Errors a user can act on, whatever the tool: a path or object that is not there, no permission (local or
# object-store credentials), an endpoint that cannot be reached, a missing optional package (e.g. s3fs), a
# stats file that is not one.
USER_ERRORS = (FileNotFoundError, PermissionError, ConnectionError, ImportError, StatsError)
INTERRUPTED = 130  # the status a shell gives a command stopped by Ctrl-C (128 + SIGINT)


def error_console() -> Console:
    """The console commands print progress and messages on: stderr, long lines not hard-wrapped."""
    return Console(stderr=True, soft_wrap=True)


def report_failure(console: Console, tool: str, error: BaseException) -> int:
    """Print ``tool: message`` in red (the message shown as written, not as markup); returns exit status 1."""
    console.print(f"[bold red]{tool}:[/] {escape(str(error))}")
    return 1


def report_interrupt(console: Console, tool: str, what_next: str) -> int:
    """Print that ``tool`` was interrupted and ``what_next`` (what is kept, how to go on); returns 130."""
    console.print(f"[bold yellow]{tool}: interrupted;[/] {escape(what_next)}")
    return INTERRUPTED


def interruptible(tool: str, what_next: str, command: Callable[[], int]) -> int:
    """Run ``command`` (a tool's work, returning its exit status); a Ctrl-C during it ends the tool with
    :func:`report_interrupt`'s one line and status 130 instead of a traceback."""
    try:
        return command()
    except KeyboardInterrupt:
        return report_interrupt(error_console(), tool, what_next)


def printable(text: str) -> str:
    """``text`` as valid UTF-8 for messages, tables, JSON and plots: the bytes of a file name that is not valid
    UTF-8 (which Python keeps as surrogates) are shown as ``\\xNN`` escapes; other text is unchanged."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
