#!/usr/bin/env bash
# Set up (first run) and start the main job: bash scripts/start.sh [app options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False
if [ -f app.py ]; then
  exec .venv/bin/python app.py "$@"
fi
# Until the studio exists: train on the shared data.
exec .venv/bin/python -m sard.train --data "${SARD_DATA:-../shared/data}/magnetic_tile" --out runs/quickstart --iters 500 "$@"
