"""Shared fixtures: the real clips from ../shared/data and a runner for the console scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVTS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def real_clips() -> Path:
    """The folder of real video clips (never modified)."""
    folder = SHARED_DATA / "real_clips"
    if not folder.is_dir():
        pytest.skip(f"real clips not found at {folder} (set AVTS_SHARED_DATA)")
    return folder


def run_cli(module: str, *args: str, timeout: float = 600, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` and return the finished process (output captured as text)."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, "CI": "true", **(env or {})})
