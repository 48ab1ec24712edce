#!/usr/bin/env bash
# The paper's Table IV variants at one budget (1000 steps each, 64 px, batch 4, one thread), one after
# another into runs/ab-<name> (magnetic tile) or runs/ab-<category>-<name> (any other data set); each
# resumes where it stopped. About 20 min each (magnetic tile and bottle) on this 2-core CPU beside another job.
# Each finished run is shipped (EMA weights, fp16) to checkpoints/ablations/<category>/<name>, where
# `python -m sard.evaluate segmentation` finds them by default; commit that folder. Git keeps one copy of
# each file: a bank identical to the shipped model's is a relative link to it (e.g. bank -> ../../../sard-bottle/bank),
# and each category's sard variant is its shipped model itself (magnetic_tile/sard -> ../../sard-magnetic-tile,
# bottle/sard -> ../../sard-bottle), so the benchmarks measure what users get.
#   bash scripts/train_ablations.sh [ITERS] [DATA]
set -u
cd "$(dirname "$0")/.."
iters=${1:-1000}
data=${2:-../shared/data/magnetic_tile}
category=$(basename "$data")
prefix=runs/ab-; [ "$category" = magnetic_tile ] || prefix=runs/ab-$category-
for v in "sard:" "ddgan:--no-rcd --no-dmg" "w_rcd:--no-dmg" "w_dmg:--no-rcd"; do
  name=${v%%:*}; flags=${v#*:}; out=$prefix$name
  # a shipped variant is kept: its segmentation records are keyed on those weights
  [ -f "checkpoints/ablations/$category/$name/model.safetensors" ] && continue
  resume=""; [ -f "$out/train_state.json" ] && resume="--resume"
  .venv/bin/python -m sard.train --data "$data" --out "$out" --iters "$iters" --res 64 \
    --batch 4 --ckpt-every 250 --sample-every 1000 --threads 1 $flags $resume > "$out.log" 2>&1 || exit 1
  .venv/bin/python -m sard.checkpoint "$out" "checkpoints/ablations/$category/$name" >> "$out.log" 2>&1 || exit 1
done
