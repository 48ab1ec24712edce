#!/usr/bin/env bash
# The paper's Table IV variants (DDGAN, w/ RCD, w/ DMG) with the recipe of the shipped SARD models, so
# the four rows differ by the switches alone (64 px, batch 4, one thread, ITERS steps a stage):
#   magnetic tile: stage 1, ITERS steps from scratch without the texture term, into runs/ab-<name>;
#                  stage 2, fine-tuned ITERS steps from it with the trainer's defaults (texture term),
#                  into runs/ab-<name>-tex; stage 2 is shipped (as sard-magnetic-tile was made);
#   any other data set: fine-tuned ITERS steps from the variant's stage-1 tile model (trained first
#                  if missing) with the chroma term, into runs/ab-<category>-<name> (as sard-bottle was made).
# Each stage resumes where it stopped; about 20 min a stage on this 2-core CPU beside another job. The
# finished run is shipped (EMA weights, fp16) to checkpoints/ablations/<category>/<name>, where
# `python -m sard.evaluate segmentation` finds it; commit that folder. A shipped variant is kept (its
# segmentation records are keyed on those weights): delete its folder to retrain it. Git keeps one copy
# of each file: a bank identical to the shipped model's is a relative link to it, and each category's
# sard variant is its shipped model itself (magnetic_tile/sard -> ../../sard-magnetic-tile,
# bottle/sard -> ../../sard-bottle), so the benchmarks measure what users get.
#   bash scripts/train_ablations.sh [ITERS] [DATA]
set -u
cd "$(dirname "$0")/.."
iters=${1:-1000}
data=${2:-../shared/data/magnetic_tile}
tile=$(dirname "$data")/magnetic_tile
category=$(basename "$data")
mkdir -p runs
echo '{"loss": {"texture": 0.0}}' > runs/cfg_ablation_stage1.json
echo '{"loss": {"chroma": 1.0}}' > runs/cfg_ablation_transfer.json

train() {  # OUT DATA EXTRA...: one stage, resumed if it has state, never redone once done
  local out=$1 d=$2; shift 2
  [ -f "$out/done" ] && return 0
  local resume=""; [ -f "$out/train_state.json" ] && resume="--resume"
  .venv/bin/python -m sard.train --data "$d" --out "$out" --iters "$iters" --res 64 --batch 4 \
    --ckpt-every 100 --sample-every 1000 --threads 1 "$@" $resume >> "$out.log" 2>&1 && touch "$out/done"
}

for v in "ddgan:--no-rcd --no-dmg" "w_rcd:--no-dmg" "w_dmg:--no-rcd"; do
  name=${v%%:*}; flags=${v#*:}
  [ -f "checkpoints/ablations/$category/$name/model.safetensors" ] && continue
  stage1=runs/ab-$name
  train "$stage1" "$tile" --config runs/cfg_ablation_stage1.json $flags || exit 1
  if [ "$category" = magnetic_tile ]; then
    out=runs/ab-$name-tex
    train "$out" "$data" --init "$stage1" $flags || exit 1
  else
    out=runs/ab-$category-$name
    train "$out" "$data" --init "$stage1" --config runs/cfg_ablation_transfer.json $flags || exit 1
  fi
  .venv/bin/python -m sard.checkpoint "$out" "checkpoints/ablations/$category/$name" >> "$out.log" 2>&1 || exit 1
done
