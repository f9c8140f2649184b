#!/usr/bin/env bash
# What a checkpoint costs as the chain grows: one run saved at every
# WINDOW-th namespace and resumed from each save in a new process, so each
# save is also restored once. Prints one row per save: the chain, the state
# file's size, the save and the restore time.
#
#   ci/bench-checkpoint.sh [KERNEL] [ITERATIONS] [WINDOW]   default 6.1-noprune 20000 2000
#
# ACCEL (default tcg) and CPUS as for the other ci/bench-*.sh; WORKERS churn
# loops (default 1). KEEP=DIR keeps
# the run directory there (results/ takes only such real runs).
set -euo pipefail
# shellcheck source=ci/bench-common.sh
. "$(dirname "$0")/bench-common.sh"
kernel=${1:-6.1-noprune}
iterations=${2:-20000}
window=${3:-2000}
out=${KEEP:-$work/run}
workers=${WORKERS:-1}

"$repro" run --kernel "$kernel" -n "$iterations" -w "$workers" --window "$window" --accel "$accel" --cpus "$cpus" \
  --stop-after 0s --out "$out" -q || [ $? = 75 ]
while :; do
  code=0
  "$repro" resume "$out" --stop-after 0s -q || code=$?
  case "$code" in
    0) break ;;
    75) ;;
    *) echo "bench: repro resume exited $code" >&2; exit "$code" ;;
  esac
done
echo "| chain (namespaces) | state file | save | restore |"
echo "|---|---|---|---|"
jq -r '.checkpoints[] | "| \(.iteration) | \(.state_bytes / 1048576 | floor) MiB | \(.save_s * 10 | round / 10) s | \(.restore_s // 0 | . * 10 | round / 10) s |"' \
  "$out/summary.json"
jq -r '"residual \(.residual.per_iteration) per namespace, \(.iterations_done) of \(.iterations_requested), complete: \(.complete)"' "$out/summary.json"
