#!/usr/bin/env bash
# Set up and run AVTS on the embedded example: ingest ../shared/data/real_clips with a local Ray into
# shards/ and manifests/, then train two tiny epochs on the CPU into runs/demo (loss/accuracy PNGs there).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
SRC=${SRC:-../shared/data/real_clips}
.venv/bin/avts-ingest --src "$SRC" --out shards --workers 2 --shard-size 2 --val-fraction 0.25 --engine ray
rm -rf runs/demo
.venv/bin/avts-train --shards shards --out runs/demo --epochs 2 --batch-size 2 \
  --width 8 --audio-width 8 --crop-size 64 --workers 1 --val-clips 2 --log-every 1 --device cpu
echo "shards: $(ls shards/*.tar | wc -l) in shards/; manifests in manifests/; run in runs/demo"
