#!/usr/bin/env bash
# Six fixed sard.export commands (every method, a gray and an RGB checkpoint, an ablation without RCD,
# bank / random / on-part masks) into OUT: run on two commits in the same checkout (manifests hold
# absolute paths), then compare the trees with
#   python -m tools.compare_exports OUT_BEFORE OUT_AFTER
# A change that keeps behaviour gives byte-identical pairs (manifests equal but for the timing).
set -euo pipefail
OUT=${1:?usage: bash tools/export_identity.sh OUT_FOLDER}
PY=${PY:-.venv/bin/python}
$PY -m sard.export --normals ../shared/data/magnetic_tile --out $OUT/sard --per-type 2 --seed 3 --device cpu >/dev/null 2>&1
$PY -m sard.export --method cutpaste --normals ../shared/data/magnetic_tile --out $OUT/cutpaste --per-type 2 --seed 3 --masks perlin >/dev/null 2>&1
$PY -m sard.export --method glass --normals ../shared/data/bottle --out $OUT/glass --per-type 1 --seed 1 --masks ellipse --on-part >/dev/null 2>&1
$PY -m sard.export --method draem --normals ../shared/data/bottle --out $OUT/draem --per-type 1 --seed 1 --masks bank >/dev/null 2>&1
$PY -m sard.export --checkpoint sard-bottle --normals ../shared/data/bottle --out $OUT/bottle --per-type 1 --seed 2 --on-part --device cpu >/dev/null 2>&1
$PY -m sard.export --checkpoint checkpoints/ablations/magnetic_tile/ddgan --normals ../shared/data/magnetic_tile --out $OUT/ddgan --per-type 1 --seed 2 --no-rcd --no-roi --device cpu >/dev/null 2>&1
