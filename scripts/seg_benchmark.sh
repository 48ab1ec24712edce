#!/usr/bin/env bash
# The default segmentation benchmark of one category on both cores: stream A (Real only and the
# baselines) and stream B (the paper's four variants from checkpoints/ablations/<category>/) share one
# --work and the committed records in reports/<category>/cache/, each with its own log; when both are
# done, the report over all methods (only read from the cache) goes to reports/<category>/segmentation.md.
# Stopped anywhere, the same command resumes at the first missing segmenter; commit
# reports/<category>/cache/ as records arrive (`... --from-cache` writes a partial report meanwhile).
#   bash scripts/seg_benchmark.sh [DATA]
set -u
cd "$(dirname "$0")/.."
data=${1:-../shared/data/magnetic_tile}
category=$(basename "$data")
work=runs/seg-$category
results=reports/$category/cache
mkdir -p "$work"
ab=""
for v in ddgan w_rcd w_dmg sard; do
  [ -d "checkpoints/ablations/$category/$v" ] && ab="$ab,$v=checkpoints/ablations/$category/$v"
done
seg() { .venv/bin/python -m sard.evaluate segmentation --data "$data" --threads 1 --work "$work" --results "$results" "$@"; }
seg --methods real,cutpaste,draem,glass --out "$work/streamA.md" > "$work/streamA.log" 2>&1 & a=$!
b=""
if [ -n "$ab" ]; then seg --methods "${ab#,}" --out "$work/streamB.md" > "$work/streamB.log" 2>&1 & b=$!; fi
wait $a || exit 1
[ -z "$b" ] || wait "$b" || exit 1
# The reading (why a method wins or loses) is written by a person after looking: reports/<category>/segmentation_reading.md.
reading=reports/$category/segmentation_reading.md
if [ -f "$reading" ]; then seg --out "reports/$category/segmentation.md" --reading "$reading"; else seg --out "reports/$category/segmentation.md"; fi
