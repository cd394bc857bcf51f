#!/usr/bin/env bash
# Prepare what benchmarks/gpu_proof.sh needs on the GPU box, which has no package index and no ffmpeg CLI:
#   .carry/wheels/   av, webdataset, python_speech_features, braceexpand, fsspec for the box's Python (3.12)
#   .carry/kinetics/ Kinetics-like 10-s 340x256 25 fps H.264 + AAC clips made from the real clips
# Everything carried must stay under 64 MiB (the av wheel alone is about 36 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PYVER=${CARRY_PYTHON_VERSION:-3.12}
CLIPS=${CARRY_CLIPS:-16}
mkdir -p .carry/wheels
$PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .carry/wheels av webdataset braceexpand fsspec
$PY -m pip wheel -q --no-deps -w .carry/wheels python_speech_features
$PY benchmarks/ingest_bench.py --make-inputs-only --videos "$CLIPS" --inputs-dir .carry/kinetics
du -sh .carry .carry/*
