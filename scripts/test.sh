#!/usr/bin/env bash
# Set up (first run) and run the whole test suite: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
# The browser test drives Debian's chromium; install it when we may (root), else that test skips.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[test] installing Debian's chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
    >/dev/null 2>&1 || echo "[test] could not install chromium; the browser test will skip"
fi
export GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest -q "$@"
