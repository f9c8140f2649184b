#!/usr/bin/env bash
# One CI matrix job, runnable here: set up, prove the accelerator, check one
# kernel on one scenario, and write a short summary. The GitHub workflow
# (ci/workflows/repro.yml) runs exactly this; only caching and artifact
# upload are GitHub's.
#
#   ci/job.sh KERNEL [SCENARIO] [ITERATIONS]      e.g. ci/job.sh 6.1-noprune seed 3000
#
# The run directory is $REPRO_JOB_OUT (default results/runs/ci/<scenario>/<kernel>);
# its job-summary.md is appended to $GITHUB_STEP_SUMMARY when that is set.
# Exit status: repro check's (0 clean, 1 regressed, 125 inconclusive), or 0
# when the verdict matches the catalog's expectation and JOB_EXIT=expect.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
kernel=${1:?usage: ci/job.sh KERNEL [SCENARIO] [ITERATIONS]}
scenario=${2:-seed}
iterations=${3:-3000}
out=${REPRO_JOB_OUT:-$here/results/runs/ci/$scenario/$kernel}

PROFILE=release "$here/ci/setup.sh"
repro="$here/target/x86_64-unknown-linux-gnu/release/repro"

# --accel auto proves KVM with a boot handshake and falls back to TCG; the
# run's summary.json says which ran and why.
if [ -e /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  echo "job: /dev/kvm is usable by $(id -un); repro will prove it with a boot" >&2
else
  echo "job: no usable /dev/kvm: TCG" >&2
fi

rm -rf "$out"
set +e
"$repro" check --kernel "$kernel" --scenario "$scenario" -n "$iterations" --out "$out"
code=$?
set -e

expect=$("$repro" kernels --matrix --scenarios "$scenario" | python3 -c '
import json, sys
m = json.load(sys.stdin)["include"]
print(next((e["expect"] for e in m if e["kernel"] == sys.argv[1]), "none"))' "$kernel")
verdict=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outcome"])' "$out/verdict.json" 2>/dev/null || echo "none")
{
  echo "### $kernel on $scenario ($iterations iterations)"
  echo
  echo "verdict: **$verdict** (expected: $expect; repro check exit $code)"
  echo
  python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
s = json.load(open(f"{d}/summary.json"))
v = json.load(open(f"{d}/verdict.json")) if __import__("os").path.exists(f"{d}/verdict.json") else {}
print(f"- kernel release: {s['kernel'].get('release')}, accel: {s.get('accel')} ({s.get('accel_fallback_reason') or 'no fallback'})")
print(f"- rule: {v.get('rule', '-')}")
PY
} > "$out/job-summary.md" || true
cat "$out/job-summary.md" >&2 || true
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$out/job-summary.md" >> "$GITHUB_STEP_SUMMARY" || true; fi

if [ "${JOB_EXIT:-}" = expect ]; then
  [ "$verdict" = "$expect" ] && exit 0
  echo "job: verdict $verdict differs from the catalog's expectation $expect" >&2
  exit 1
fi
exit $code
