#!/usr/bin/env bash
# Evaluate the canary checkpoint on a fixed part of the generated sample suite with fixed seeds
# and compare the scores with the committed baseline. Exits non-zero when a score dropped by
# more than its allowed drop or the protocol changed.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tasks=(okvqa vqav2 coco imagenet hateful_memes)
task_flags=()
for task in "${tasks[@]}"; do
  .venv/bin/flamingo-eval sample-data "$task" "$work/data/$task" --seed 0 >/dev/null
  task_flags+=(--task "$task")
done
.venv/bin/flamingo-eval "${task_flags[@]}" --model canary --shots 0,4 --seeds 1 --num-samples 32 \
  --data-dir "$work/data" --output-dir "$work/run" >/dev/null
.venv/bin/flamingo-eval check "$work/run" --baseline baselines/canary-sample.yaml \
  --junit-xml "$work/junit.xml"
