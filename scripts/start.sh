#!/usr/bin/env bash
# Set up (first run) and start the main job: bash scripts/start.sh [app options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python app.py "$@"
