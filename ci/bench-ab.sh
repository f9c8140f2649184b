#!/usr/bin/env bash
# Benchmark: default `repro check` wall time of two builds of repro, A
# (before) and B (after), interleaved run by run so both see the same host,
# with the ratio of their medians per kernel.
#
#   ci/bench-ab.sh A_REPRO B_REPRO [KERNEL...]     default kernels: 6.1-noprune 6.1-src 6.1
#
# Build A from the older commit in a worktree, e.g.
#   git worktree add /tmp/a OLD && (cd /tmp/a && CARGO_TARGET_DIR=/tmp/a-target cargo build --release)
# Env: ACCEL (default tcg), REPEATS (default 5). Prints one row per run
# (exit, namespaces, the guest's uptime at the agent's hello, wall seconds)
# and then the medians; BENCHMARKS.md records the results.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,12p "$0" >&2; exit 2; }
a=$1 b=$2; shift 2
kernels=("$@"); [ ${#kernels[@]} -gt 0 ] || kernels=(6.1-noprune 6.1-src 6.1)
accel=${ACCEL:-tcg}; repeats=${REPEATS:-5}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
rows="$work/rows"
printf '| kernel | build | repeat | exit | namespaces | uptime at hello | load | seconds |\n|---|---|---|---|---|---|---|---|\n'
for k in "${kernels[@]}"; do
  for r in $(seq "$repeats"); do
    for which in A B; do
      bin=$a; [ "$which" = B ] && bin=$b
      out="$work/$which-$r"
      load=$(cut -d' ' -f1 /proc/loadavg)
      t0=$(date +%s.%N)
      set +e
      "$bin" -q check --kernel "$k" --accel "$accel" --out "$out" >/dev/null 2>&1
      code=$?
      set -e
      t1=$(date +%s.%N)
      secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
      iters=$(jq -r '.evidence.iterations' "$out/verdict.json")
      up=$(jq -r '.phases.guest_uptime_at_hello_s // "?"' "$out/summary.json")
      printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$k" "$which" "$r" "$code" "$iters" "$up" "$load" "$secs"
      echo "$k $which $secs" >>"$rows"
      rm -rf "$out"
    done
  done
done
printf '\n| kernel | median A | median B | B/A |\n|---|---|---|---|\n'
for k in "${kernels[@]}"; do
  ma=$(awk -v k="$k" '$1 == k && $2 == "A" { print $3 }' "$rows" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  mb=$(awk -v k="$k" '$1 == k && $2 == "B" { print $3 }' "$rows" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  printf '| %s | %s | %s | %s |\n' "$k" "$ma" "$mb" "$(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.2f", b / a }')"
done
