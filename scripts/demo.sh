#!/usr/bin/env bash
# AVTS end to end on a CPU, from a fresh clone: set up, make the data, ingest it with the local Ray, train.
#
#   scripts/demo.sh                  # 224 avts-synth videos (6 s, 64 px) → shards → 8 short epochs on the CPU
#   SRC=my_videos/ scripts/demo.sh   # the same on a folder of your own videos (first folder level = label)
#
# Everything is written under runs/demo/ (runs/demo-own/ with SRC; DEMO_DIR overrides): synth/ (the videos),
# shards/ + manifests/ (avts-ingest), run/ (avts-train: metrics.jsonl, loss.png, accuracy.png, lr.png).
# Training uses `avts-train --recipe cpu-demo` (trainer/recipes.py): about 2 minutes on a 2-core CPU,
# ending at ≥ 90% AVTS accuracy with easy negatives on the held-out synthetic videos. Set-up is the first
# run's only slow part; every phase's wall time is printed. Extra arguments go to avts-train (they win over
# the recipe), e.g. `scripts/demo.sh --epochs 4`. SETUP=0 skips scripts/setup.sh (an existing .venv is used).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SETUP:-1}" = 0 ] || scripts/setup.sh
if [ -n "${SRC:-}" ]; then
  DEMO=${DEMO_DIR:-runs/demo-own}
  SOURCE=$SRC
else
  DEMO=${DEMO_DIR:-runs/demo}
  SOURCE=$DEMO/synth
fi
phase_start=$(date +%s)
phase() {  # NAME: print the wall time of the phase that just ended
  local now; now=$(date +%s)
  echo "demo: $1 took $((now - phase_start)) s"
  phase_start=$now
}

if [ -z "${SRC:-}" ]; then
  # Resumable: videos already there are kept (the same seed makes the same files).
  .venv/bin/avts-synth --out "$SOURCE" --videos 224 --duration 6 --size 64 --workers 2 --seed 0
  phase "avts-synth (224 videos)"
fi
# A rerun with the same settings keeps the shards already made; 30% of the videos (by key hash) are held out.
.venv/bin/avts-ingest --src "$SOURCE" --out "$DEMO/shards" --engine ray --workers 2 --shard-size 16 \
  --short-side 64 --val-fraction 0.3
phase "avts-ingest (local Ray, 2 workers)"
rm -rf "$DEMO/run"
.venv/bin/avts-train --recipe cpu-demo --shards "$DEMO/shards" --out "$DEMO/run" --device cpu "$@"
phase "avts-train --recipe cpu-demo"
.venv/bin/python - "$DEMO/run" <<'EOF'
import json, sys
from pathlib import Path

run = Path(sys.argv[1])
epochs = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "epoch"]
last = epochs[-1]
easy = last.get("val_acc_easy")
pairs = int(last.get("val_pairs_easy") or 0)
reached = ("no AVTS accuracy (too few validation videos)" if easy is None
           else f"AVTS accuracy {easy:.1%} with easy negatives ({pairs} pairs from held-out videos)")
print(f"demo: {reached} after {len(epochs)} epochs; curves: {run / 'accuracy.png'}, {run / 'loss.png'}")
EOF
