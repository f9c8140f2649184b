#!/usr/bin/env bash
# Benchmark: repro's churn rate (one worker) against the C reference loop
# (shared/bench/churn-ref.c), each in a fresh guest on the same kernel with
# the same QEMU settings, in alternating rounds.
#
#   ci/bench-churn.sh [KERNEL] [ITERATIONS] [ROUNDS]     defaults: 6.1 2000 3
#
# Prints one line per measurement and the medians; BENCHMARKS.md records
# the results. Env: ACCEL (default tcg), CPUS (default 2), CHURN_REF_SRC.
set -euo pipefail
kernel=${1:-6.1}; n=${2:-2000}; rounds=${3:-3}
# shellcheck source=ci/bench-common.sh
. "$(dirname "$0")/bench-common.sh"
churn_ref

c_rates=(); r_rates=()
for i in $(seq 1 "$rounds"); do
  line=$("$repro" -q exec --kernel "$kernel" --accel "$accel" --cpus "$cpus" --include "$work/churn-ref" -- /bin/churn-ref "$n" | tail -n 1)
  c=$(sed -n 's/.* rate=\([0-9.]*\)\/s.*/\1/p' <<<"$line")
  "$repro" -q run --kernel "$kernel" --accel "$accel" --cpus "$cpus" -n "$n" --workers 1 --out "$work/run$i" >/dev/null
  r=$(python3 -c "import json,sys; w=json.load(open(sys.argv[1]))['windows'][-1]; print(round(w['iteration']/w['elapsed_s']))" "$work/run$i/summary.json")
  echo "round $i: churn-ref ${c}/s  repro ${r}/s" >&2
  c_rates+=("$c"); r_rates+=("$r")
done
release=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['kernel']['release'])" "$work/run1/summary.json")
python3 - "$kernel" "$release" "$n" "$accel" "$cpus" "${c_rates[*]}" "${r_rates[*]}" <<'PY'
import statistics, sys
kernel, release, n, accel, cpus, c, r = sys.argv[1:]
c = [float(x) for x in c.split()]; r = [float(x) for x in r.split()]
mc, mr = statistics.median(c), statistics.median(r)
print(f"| {kernel} ({release}) | {accel}, -smp {cpus} | {n} | {' / '.join(f'{x:.0f}' for x in c)} | {' / '.join(f'{x:.0f}' for x in r)} | {mc:.0f} | {mr:.0f} | {mr / mc:.2f} |")
PY
