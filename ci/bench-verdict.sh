#!/usr/bin/env bash
# Benchmark: how long `repro check` takes to decide, sequential (the
# default: rounds from the scenario's min_iterations, doubling) against
# --full (every iteration churned), per kernel, in fresh guests.
#
#   ci/bench-verdict.sh [ITERATIONS] [KERNEL...]      defaults: 3000 6.1-noprune 6.1-src 6.1
#
# Prints one line per kernel, mode and repeat: exit status, verdict,
# namespaces churned, residual, the host's load average when it started
# and wall seconds; BENCHMARKS.md records the results.
# Env: ACCEL (default tcg), CPUS (default 2), REPEATS (default 1),
# SCENARIO (default seed).
set -euo pipefail
n=${1:-3000}; shift || true
kernels=("$@"); [ ${#kernels[@]} -gt 0 ] || kernels=(6.1-noprune 6.1-src 6.1)
# shellcheck source=ci/bench-common.sh
. "$(dirname "$0")/bench-common.sh"

repeats=${REPEATS:-1}; scenario=${SCENARIO:-seed}
printf '| kernel | mode | repeat | exit | verdict | namespaces | residual | load | seconds |\n|---|---|---|---|---|---|---|---|---|\n'
for k in "${kernels[@]}"; do
  for r in $(seq "$repeats"); do
  for mode in sequential full; do
    flag=(); [ "$mode" = full ] && flag=(--full)
    out="$work/$k-$mode-$r"
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(date +%s.%N)
    set +e
    "$repro" -q check --kernel "$k" --scenario "$scenario" --accel "$accel" --cpus "$cpus" -n "$n" "${flag[@]}" --out "$out" >/dev/null 2>&1
    code=$?
    set -e
    t1=$(date +%s.%N)
    read -r outcome iters residual < <(jq -r '"\(.outcome) \(.evidence.iterations) \(.evidence.residual_per_iteration)"' "$out/verdict.json")
    printf '| %s | %s | %s | %s | %s | %s | %.2f | %s | %.1f |\n' "$k" "$mode" "$r" "$code" "$outcome" "$iters" "$residual" "$load" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
  done
  done
done
