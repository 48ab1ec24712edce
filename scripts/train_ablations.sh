#!/usr/bin/env bash
# The paper's Table IV variants at one budget (1000 steps each, 64 px, batch 4, one thread), one after
# another into runs/ab-<name>; each resumes where it stopped. About 10 min each on this 2-core CPU.
#   bash scripts/train_ablations.sh [ITERS]
set -u
cd "$(dirname "$0")/.."
iters=${1:-1000}
for v in "sard:" "ddgan:--no-rcd --no-dmg" "w_rcd:--no-dmg" "w_dmg:--no-rcd"; do
  name=${v%%:*}; flags=${v#*:}
  resume=""; [ -f runs/ab-$name/train_state.json ] && resume="--resume"
  .venv/bin/python -m sard.train --data ../shared/data/magnetic_tile --out runs/ab-$name --iters "$iters" --res 64 \
    --batch 4 --ckpt-every 250 --sample-every 1000 --threads 1 $flags $resume > runs/ab-$name.log 2>&1 || exit 1
done
