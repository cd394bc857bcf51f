#!/usr/bin/env bash
# Every GPU proof of AVTS in one prepared script (run it on the 16-core GPU box through the device tool):
#   1. learning: avts-synth videos → avts-ingest → avts-train; AVTS accuracy (easy / 25% hard) and curves,
#      two runs at once sharing the box: the paper's SGD recipe and Adam;
#   2. training throughput: shards vs synthetic GPU tensors vs a map-style raw-mp4 loader (train_bench.py);
#   3. ingest scaling 1 → all cores' workers on Kinetics-like clips, the same clips per worker, alternating rounds of
#      the whole avts-ingest command (ingest_scaling.py, process pool: no Ray there), and the machine's own ceiling
#      for it (parallel_ceiling.py: independent processes, no pool), and where the pool's workers spend a run
#      (pool_timeline.py: starting, busy, between tasks, idle at the end);
#   4. downstream on stage 1's Adam model: avts-sync on held-out files with known offsets (sync_synthetic.py),
#      avts-finetune from it vs from scratch on a labelled synthetic split (finetune_synthetic.py); the model is
#      returned in $OUT so that avts-probe runs on ESC-10 where that data is (it does not travel).
# Each stage has its own time limit and a failing stage does not stop the others. Figures are printed and
# written under $OUT (default /tmp/avts_proof). SMALL=1 runs the same code at toy size on a CPU.
#
# Needs, in the working tree (made by benchmarks/prepare_carry.sh, carried with the device tool):
#   .carry/wheels/   wheels of av, webdataset, python_speech_features, braceexpand, fsspec
#   .carry/kinetics/ Kinetics-like 10-s 340x256 H.264+AAC clips (the GPU box has no ffmpeg CLI)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/avts_proof}
WORK=${WORK:-/tmp/avts_work}
PY=${PYTHON:-python3}
SMALL=${SMALL:-0}
STAGES=${STAGES:-1234}  # which stages to run, e.g. STAGES=3 (stage 4 needs stage 1's model)
CORES=$(nproc)
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD CI=true PYTHONUNBUFFERED=1
started=$(date +%s)
stage() { echo; echo "=== $1 ($(($(date +%s) - started)) s) ==="; }
want() { [[ "$STAGES" == *"$1"* ]]; }

if [ "$SMALL" = 1 ]; then
  VIDEOS=48; DURATION=4; EPOCHS=2; EPOCH_SIZE=128; BATCH=8; WIDTH=4; CROP=32; LOADER_WORKERS=1
  BENCH_ARGS="--width 4 --crop 32 --batch-size 4 --steps 4 --warmup 2 --workers 2"
  LEARN_LIMIT=400; PER_WORKER=2; ROUNDS=1; SCALING_LIMIT=120; TIMELINE_CLIPS=8; CEILING_CLIPS=2
  SYNC_ARGS="--per-offset 1 --offsets -0.2 0.2 --duration 4"; FT_ARGS="--classes 2 --per-class 4 --train-per-class 2 \
    --epochs 1 --epoch-size 16"; DOWNSTREAM_LIMIT=300
else
  VIDEOS=1200; DURATION=6; EPOCHS=6; EPOCH_SIZE=12800; BATCH=64; WIDTH=32; CROP=56; LOADER_WORKERS=7
  BENCH_ARGS="--width 64 --crop 112 --batch-size 16 --steps 60 --warmup 15 --workers 15"
  LEARN_LIMIT=150; PER_WORKER=96; ROUNDS=3; SCALING_LIMIT=330; TIMELINE_CLIPS=480; CEILING_CLIPS=30
  SYNC_ARGS="--per-offset 8"; FT_ARGS="--classes 8 --per-class 16 --train-per-class 8 --epochs 8 --epoch-size 512"
  DOWNSTREAM_LIMIT=100
fi

stage "setup"
if [ -d .carry/wheels ]; then
  $PY -m pip install -q --no-index --find-links .carry/wheels av webdataset python_speech_features braceexpand \
    fsspec 2>&1 | tail -2
fi
$PY -c "
import os, torch, av, webdataset
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU', 'cores', os.cpu_count(),
      'av', av.__version__, 'webdataset', webdataset.__version__)" | tee "$OUT/machine.txt"

if want 1; then
stage "1. learning proof: synth → ingest → train"
timeout 120 $PY -m pipeline.synth_cli --out "$WORK/synth" --videos $VIDEOS --duration $DURATION --size 64 --workers "$CORES"
timeout 150 $PY -m pipeline.cli --src "$WORK/synth" --out "$WORK/synth_shards" --engine processes --workers "$CORES" \
  --shard-size 32 --short-side 64 --val-fraction 0.08 --plain 2>&1 | grep -E "ingested|failed|elapsed|Error"

learn() {  # name optimizer lr: one avts-train run; video and audio keep 10 time bins
  rm -rf "$WORK/learn-$1"
  timeout $LEARN_LIMIT $PY -m trainer.cli --shards "$WORK/synth_shards" --out "$WORK/learn-$1" --epochs $EPOCHS \
    --epoch-size $EPOCH_SIZE --batch-size $BATCH --width $WIDTH --audio-width $WIDTH --embed-dim 64 \
    --crop-size $CROP --video-time-bins 10 --audio-time-bins 10 --audio-context 6 --workers $LOADER_WORKERS \
    --optimizer $2 --lr $3 --val-clips 4 --log-every 50 --plain > "$WORK/learn-$1.log" 2>&1
  grep -E "^epoch [0-9]+ \||^done|Error" "$WORK/learn-$1.log" | sed "s/^/[$1] /"
  cp "$WORK/learn-$1/accuracy.png" "$OUT/learn-$1-accuracy.png" 2>/dev/null
  cp "$WORK/learn-$1/metrics.jsonl" "$OUT/learn-$1-metrics.jsonl" 2>/dev/null
}
learn adam adam 0.001 &
learn sgd sgd 0.05 &
wait
cp "$WORK/learn-adam/loss.png" "$OUT/learn-adam-loss.png" 2>/dev/null
fi

if want 2; then
stage "2. training throughput (train_bench.py)"
timeout 120 $PY -m pipeline.cli --src .carry/kinetics --out "$WORK/kin/shards" --engine processes --workers "$CORES" \
  --shard-size 2 --val-fraction 0 --plain 2>&1 | grep -E "ingested|failed|elapsed|Error"
timeout 200 $PY benchmarks/train_bench.py --shards "$WORK/kin/shards" --raw .carry/kinetics $BENCH_ARGS \
  --results "$OUT/RESULTS.md" 2>&1 | tail -16
fi

if want 3; then
stage "3. ingest scaling 1 → $CORES workers, the same clips per worker (ingest_scaling.py)"
timeout $SCALING_LIMIT $PY benchmarks/ingest_scaling.py --inputs .carry/kinetics --workdir "$WORK/scaling" \
  --per-worker $PER_WORKER --workers "$CORES" --rounds $ROUNDS --results "$OUT/RESULTS.md" 2>&1 | tee "$OUT/scaling.log" | grep -v "^$" | tail -20
# where the workers' time goes at that many workers: busy, starting, between tasks, idle at the end
{ echo; echo "## Pool timeline, $CORES workers"; echo; timeout 60 $PY benchmarks/pool_timeline.py \
  --inputs .carry/kinetics --workdir "$WORK/timeline" --workers "$CORES" --clips $TIMELINE_CLIPS; } 2>&1 \
  | tee -a "$OUT/RESULTS.md" | tail -9
# the machine's own ceiling for that scaling: the same per-clip work in independent processes, no pool
{ echo; echo "## Parallel ceiling (independent processes, no pool)"; echo; grep -E "^(Model name|Thread|Core|Socket)" \
  <(lscpu) | sed 's/^/    /'; echo; timeout 90 $PY benchmarks/parallel_ceiling.py --inputs .carry/kinetics \
  --per-process $CEILING_CLIPS --workers-list "1,$CORES"; } 2>&1 | tee -a "$OUT/RESULTS.md" | tail -9
fi

if want 4; then
stage "4. downstream: avts-sync and avts-finetune with stage 1's model"
MODEL="$WORK/learn-adam/checkpoints/last.pt"
if [ -f "$MODEL" ]; then
  $PY -c "import sys, torch; c = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
torch.save({k: c[k] for k in ('format', 'model_spec', 'stats', 'model', 'config')}, sys.argv[2])" \
    "$MODEL" "$OUT/pretrained-synth.pt"  # weights only, for avts-probe on ESC-10 where the data is
  timeout $DOWNSTREAM_LIMIT $PY benchmarks/sync_synthetic.py --work "$WORK/sync" --checkpoint "$MODEL" --device auto \
    $SYNC_ARGS 2>&1 | tail -14
  timeout $DOWNSTREAM_LIMIT $PY benchmarks/finetune_synthetic.py --work "$WORK/finetune" --checkpoint "$MODEL" \
    --crop-size $CROP --device auto $FT_ARGS 2>&1 | tail -10
else
  echo "stage 4 skipped: no stage-1 model at $MODEL (run stage 1 first)"
fi
fi

stage "done"
ls -la "$OUT"
