#!/usr/bin/env bash
# Benchmark: how long `repro check` takes to decide, sequential (the
# default: rounds from the scenario's min_iterations, doubling) against
# --full (every iteration churned), per kernel, in fresh guests.
#
#   ci/bench-verdict.sh [ITERATIONS] [KERNEL...]      defaults: 3000 6.1-noprune 6.1-src 6.1
#
# Prints one line per kernel and mode: exit status, verdict, namespaces
# churned and wall seconds; BENCHMARKS.md records the results.
# Env: ACCEL (default tcg), CPUS (default 2).
set -euo pipefail
n=${1:-3000}; shift || true
kernels=("$@"); [ ${#kernels[@]} -gt 0 ] || kernels=(6.1-noprune 6.1-src 6.1)
# shellcheck source=ci/bench-common.sh
. "$(dirname "$0")/bench-common.sh"

printf '| kernel | mode | exit | verdict | namespaces | seconds |\n|---|---|---|---|---|---|\n'
for k in "${kernels[@]}"; do
  for mode in sequential full; do
    flag=(); [ "$mode" = full ] && flag=(--full)
    out="$work/$k-$mode"
    t0=$(date +%s.%N)
    set +e
    "$repro" -q check --kernel "$k" --accel "$accel" --cpus "$cpus" -n "$n" "${flag[@]}" --out "$out" >/dev/null 2>&1
    code=$?
    set -e
    t1=$(date +%s.%N)
    read -r outcome iters < <(jq -r '"\(.outcome) \(.evidence.iterations)"' "$out/verdict.json")
    printf '| %s | %s | %s | %s | %s | %.1f |\n' "$k" "$mode" "$code" "$outcome" "$iters" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
  done
done
