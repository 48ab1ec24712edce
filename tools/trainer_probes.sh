#!/usr/bin/env bash
# The trainer changes of 2026-12-01 side by side at one budget (1000 steps, 64 px, batch 4, one thread):
# the trainer as it was (base), the blurred reconstruction error (lp2, lp4), plus a second D step (lp2d2,
# today's defaults) and D judging the clean x0 (x0lp2), into runs/q/<name>, each resuming where it stopped;
# then the card's measures per run (tools/quality_probe.py) and the C2ST of all (reports/magnetic_tile/realism_trainer_probes.md).
#   bash tools/trainer_probes.sh [ITERS]
set -u
cd "$(dirname "$0")/.."
iters=${1:-1000}
data=../shared/data/magnetic_tile
mkdir -p runs/q
declare -A cfg=(
  [base]='{"d_steps": 1, "loss": {"mse_lowpass": 0}}'
  [lp2]='{"d_steps": 1, "loss": {"mse_lowpass": 2}}'
  [lp4]='{"d_steps": 1, "loss": {"mse_lowpass": 4}}'
  [lp2d2]='{"d_steps": 2, "loss": {"mse_lowpass": 2}}'
  [x0lp2]='{"d_steps": 1, "loss": {"mse_lowpass": 2}, "discriminator": {"judges": "x0"}}'
)
for name in base lp2 lp4 lp2d2 x0lp2; do
  out=runs/q/$name
  echo "${cfg[$name]}" > "$out.json"
  resume=""; [ -f "$out/train_state.json" ] && resume="--resume"
  .venv/bin/python -m sard.train --data "$data" --out "$out" --iters "$iters" --res 64 --batch 4 \
    --ckpt-every 250 --sample-every 1000 --threads 1 --config "$out.json" $resume > "$out.log" 2>&1 || exit 1
  .venv/bin/python -m sard.checkpoint "$out" "runs/q/ck-$name" > /dev/null || exit 1
  .venv/bin/python -m tools.quality_probe "$data" "$out" 2> /dev/null
done
.venv/bin/python -m sard.evaluate realism --data "$data" \
  --methods base=runs/q/ck-base,lp2=runs/q/ck-lp2,lp2d2=runs/q/ck-lp2d2,x0lp2=runs/q/ck-x0lp2 \
  --out reports/magnetic_tile/realism_trainer_probes.json
