#!/usr/bin/env bash
# Set up a fresh machine for AVTS: ffmpeg (apt), a virtualenv in .venv with CPU torch 2.13.0 and the package.
# Idempotent: reruns reuse what is there. Source it or run it; VENV overrides the virtualenv folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${VENV:-.venv}
if ! command -v ffmpeg >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, pinned to the CPU wheel on disk: any looser spec may pull several GB of CUDA packages.
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e '.[dev]'
# pip byte-compiles what it installs, but not an editable install's sources: compile them once here, or, where
# PYTHONDONTWRITEBYTECODE is set, every process (each ingest worker) compiles them again (~50 ms per start).
"$VENV/bin/python" -m compileall -q avts pipeline trainer
