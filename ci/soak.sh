#!/usr/bin/env bash
# One segment of a soak: the design's own long run (800,000 namespaces on a
# kernel with the bug) as a chain of jobs, each shorter than GitHub's 6-hour
# limit. The GitHub workflow (ci/workflows/soak.yml) runs exactly this; only
# the artifact that carries the run directory from job to job, and the
# dispatch of the next job, are GitHub's.
#
#   ci/soak.sh KERNEL ITERATIONS [WORKERS]     e.g. ci/soak.sh 3.10 800000 4
#
# The first segment starts `repro run` in $SOAK_OUT; a segment that finds a
# checkpoint there resumes it. Each saves the guest at the first window after
# $STOP_AFTER and stops (repro's exit 75), or finishes the run.
#
# Environment:
#   SOAK_OUT     the run directory (default results/runs/soak)
#   STOP_AFTER   how long this segment churns before it saves and hands on (default 5h)
#   WINDOW       iterations per window: the points it may save at (default ITERATIONS/200)
#   ACCEL        kvm (default: a soak under TCG would never finish) or tcg (tests)
#   PROFILE      the cargo profile to build and run (default release)
# Writes soak-summary.md in the run directory (appended to $GITHUB_STEP_SUMMARY
# when set) and, with $GITHUB_OUTPUT set, the outputs next (true while the
# run goes on) and run-dir. Exit 0 when the segment saved and handed on or
# the run finished; repro's own code otherwise.
set -euo pipefail
# shellcheck source=ci/common.sh
. "$(dirname "$0")/common.sh"
here=$root
kernel=${1:?usage: ci/soak.sh KERNEL ITERATIONS [WORKERS]}
iterations=${2:?usage: ci/soak.sh KERNEL ITERATIONS [WORKERS]}
workers=${3:-1}
for n in "$iterations" "$workers"; do
  case "$n" in '' | *[!0-9]* | 0) echo "soak: ITERATIONS and WORKERS must be whole numbers above 0, not '$n'" >&2; exit 2 ;; esac
done
out=${SOAK_OUT:-$here/results/runs/soak}
stop_after=${STOP_AFTER:-5h}
window=${WINDOW:-$(( iterations / 200 > 0 ? iterations / 200 : 1 ))}
accel=${ACCEL:-kvm}
repro_setup

set +e
if [ -f "$out/checkpoint/state.json" ]; then
  echo "soak: resuming $out" >&2
  "$repro" resume "$out" --stop-after "$stop_after"
else
  echo "soak: starting $kernel, $iterations namespaces, $workers workers, under $accel" >&2
  "$repro" run --kernel "$kernel" -n "$iterations" -w "$workers" --window "$window" --accel "$accel" \
    --stop-after "$stop_after" --out "$out"
fi
code=$?
set -e

next=false
case "$code" in
  0) ;;
  75) next=true ;;
  *) echo "soak: repro exited $code; the run directory keeps what was recorded" >&2 ;;
esac

# What the next job (and a person) needs to know: how far, how slow, how long.
summary="$out/soak-summary.md"
if [ -f "$out/summary.json" ]; then
  jq -r --arg next "$next" '
    def secs: if . == null then "?" else (. / 3600 * 10 | floor / 10 | tostring) + " h" end;
    (.windows | last) as $w
    | ($w.probes // [] | map(select(.name == "ipv6")) | first) as $p
    | "## soak: \(.kernel.name), \(.iterations_done) of \(.iterations_requested) namespaces",
      "",
      "| | |", "|---|---|",
      "| dentries now (chain length + baseline) | \($w.nr_dentry // "?") |",
      "| ipv6 open now, p50 | \(if $p then ($p.p50_us | tostring) + " us" else "?" end) |",
      "| projected churn to \(.iterations_requested) | \(.projection.finish_s | secs) |",
      "| projected churn to the write-up'"'"'s 799,259 | \(.projection.writeup_chain_s | secs) |",
      "| saves so far | \(.checkpoints | length) (last \((.checkpoints | last | .state_bytes // 0) / 1048576 | floor) MiB) |",
      "| next segment | \($next) |"' "$out/summary.json" >"$summary"
  if [ "$code" = 0 ]; then
    "$repro" report "$out" --out "$out/report" >/dev/null
    echo "" >>"$summary"
    cat "$out/report/README.md" >>"$summary"
  fi
  cat "$summary" >&2
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$summary" >>"$GITHUB_STEP_SUMMARY"; fi
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  { echo "next=$next"; echo "run-dir=$out"; } >>"$GITHUB_OUTPUT"
fi
case "$code" in 0 | 75) exit 0 ;; *) exit "$code" ;; esac
