#!/usr/bin/env bash
# Benchmark: does `--workers 2` scale on a 2-vCPU guest? repro with one and
# two workers against the C reference loop (../shared/bench/churn-ref.c)
# run once and twice at the same time in the same guest (ci/bench/twice.c).
#
#   ci/bench-workers.sh [KERNEL] [ITERATIONS] [ROUNDS]     defaults: 6.1-src 2000 2
#
# Env: ACCEL (default tcg), CPUS (default 2), CHURN_REF_SRC.
set -euo pipefail
kernel=${1:-6.1-src}; n=${2:-2000}; rounds=${3:-2}
# shellcheck source=ci/bench-common.sh
. "$(dirname "$0")/bench-common.sh"
churn_ref
gcc -O2 -static -o "$work/twice" "$root/ci/bench/twice.c"

rate() { jq -r '.iterations_done / .windows[-1].elapsed_s | . * 10 | round / 10' "$1/summary.json"; }
printf '| round | repro 1 worker | repro 2 workers | C, one loop | C, two loops at once |\n|---|---|---|---|---|\n'
for i in $(seq 1 "$rounds"); do
  "$repro" -q run --kernel "$kernel" --accel "$accel" --cpus "$cpus" -n "$n" --workers 1 --out "$work/w1-$i" >/dev/null
  "$repro" -q run --kernel "$kernel" --accel "$accel" --cpus "$cpus" -n "$n" --workers 2 --out "$work/w2-$i" >/dev/null
  one=$("$repro" -q exec --kernel "$kernel" --accel "$accel" --cpus "$cpus" --include "$work/churn-ref" -- /bin/churn-ref "$n" | tail -n 1 | sed -n 's/.* rate=\([0-9.]*\)\/s.*/\1/p')
  two=$("$repro" -q exec --kernel "$kernel" --accel "$accel" --cpus "$cpus" --include "$work/churn-ref" --include "$work/twice" -- /bin/twice $((n / 2)) | sed -n 's/.*: \([0-9.]*\)\/s.*/\1/p')
  printf '| %s | %s/s | %s/s | %s/s | %s/s |\n' "$i" "$(rate "$work/w1-$i")" "$(rate "$work/w2-$i")" "$one" "$two"
done
