#!/usr/bin/env bash
# Style, lint and types (what CI checks before the tests): ruff format --check, ruff check, mypy on the library.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/ruff ] || scripts/setup.sh
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
