#!/usr/bin/env bash
# On a machine with a CUDA GPU: what SARD does there, in at most 8 minutes (python -m tools.gpu_check),
# written to reports/speed/bench_gpu.json and .md. Needs only torch, numpy, pillow, opencv, scikit-image,
# safetensors, tqdm and pytest; the data at $SARD_DATA (default ../shared/data). Without CUDA it runs a
# quick CPU smoke check of the script instead, which needs --out (it never writes the GPU report).
#   bash scripts/gpu_check.sh [--data DIR] [--checkpoint DIR] [--out FILE.json] [--cpu-smoke]
# The interpreter: $PYTHON, else .venv/bin/python, else python3.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=$(command -v python3 || command -v python)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" GRADIO_ANALYTICS_ENABLED=False
# the check keeps to 450 s itself and writes its report after every part; this is the backstop
exec timeout -k 10 480 "$py" -m tools.gpu_check "$@"
