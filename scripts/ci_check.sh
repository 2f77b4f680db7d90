#!/usr/bin/env bash
# Evaluate a fixed small sample with fixed seeds and compare it with the committed baseline;
# exits non-zero when a score dropped below its allowed band or the protocol changed.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/flamingo-eval sample-data okvqa "$work/okvqa" --seed 0 >/dev/null
.venv/bin/flamingo-eval --task okvqa --model tiny --shots 0,4 --seeds 1 --num-samples 16 \
  --data-dir "$work/okvqa" --output-dir "$work/run" >/dev/null
.venv/bin/flamingo-eval check "$work/run" --baseline baselines/tiny-okvqa-sample.yaml \
  --junit-xml "$work/junit.xml"
