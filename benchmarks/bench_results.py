"""Shared by the benchmark scripts: describe the machine and write a section of RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path


def machine_line() -> str:
    """CPU model, core count, OS and date, for the record."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, {datetime.date.today()}"


def write_section(path: Path, title: str, body: str) -> None:
    """Replace the section ``## <title>`` of a markdown file (or append it), leaving the rest untouched."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
