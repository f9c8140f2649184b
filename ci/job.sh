#!/usr/bin/env bash
# One CI matrix job, runnable here: set up, check one kernel on one
# scenario, compare the verdict with the catalog, and write a short summary.
# The GitHub workflow (ci/workflows/repro.yml) runs exactly this; only
# caching, containers and artifact upload are GitHub's.
#
#   ci/job.sh KERNEL [SCENARIO] [ITERATIONS]      e.g. ci/job.sh 6.1-noprune seed 3000
#
# KERNEL is a catalog name or the path of a bzImage (as for repro).
#
# Environment:
#   REPRO_JOB_OUT   the run directory (default results/runs/ci/<scenario>/<kernel>);
#                   it always exists afterwards and holds job-summary.md.
#   JOB_EXIT=expect exit 0 when the verdict matches the catalog's expectation
#                   (else repro check's status: 0 clean, 1 regressed, 125 inconclusive).
#   REQUIRE_KVM=1   where /dev/kvm exists, KVM must work: the run uses --accel kvm, so
#                   a silent fall-back to TCG (10-30x slower) fails the job with the reason.
#   EXPECT          the verdict that passes, clean or regressed (default: the catalog's
#                   expectation for a catalog kernel, clean for a bzImage path).
#   PROFILE         the cargo profile to build and run (default release).
# The run directory gets junit.xml (the verdict as a JUnit test case) and
# job-summary.md, which is appended to $GITHUB_STEP_SUMMARY when that is set;
# with $GITHUB_OUTPUT set, the step's outputs verdict, exit-code, run-dir, junit.
set -euo pipefail
# shellcheck source=ci/common.sh
. "$(dirname "$0")/common.sh"
here=$root
kernel=${1:?usage: ci/job.sh KERNEL [SCENARIO] [ITERATIONS]}
scenario=${2:-seed}
iterations=${3:-3000}
case "$iterations" in
  '' | *[!0-9]*) echo "job: ITERATIONS must be a whole number, not '$iterations'" >&2; exit 2 ;;
esac
case "${EXPECT:-}" in
  '' | clean | regressed) ;;
  *) echo "job: EXPECT must be clean or regressed (or empty for the catalog's), not '$EXPECT'" >&2; exit 2 ;;
esac
# A bzImage path (repro's own rule: a / in it, or a file that exists).
is_path=false
if [[ "$kernel" == */* ]] || [ -e "$kernel" ]; then is_path=true; fi
out=${REPRO_JOB_OUT:-$here/results/runs/ci/$scenario/$(basename "$kernel")}
# The default directory is this script's to replace; one it was given must
# be new or empty (it may be a user's directory).
if [ -n "${REPRO_JOB_OUT:-}" ] && [ -d "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "job: $out already holds files: give REPRO_JOB_OUT (the action's out) a new or empty directory" >&2
  exit 2
fi

repro_setup

accel=auto
if [ -e /dev/kvm ] && [ "${REQUIRE_KVM:-}" = 1 ]; then
  accel=kvm
  echo "job: /dev/kvm exists and REQUIRE_KVM=1: the run must use KVM" >&2
elif [ -e /dev/kvm ]; then
  echo "job: /dev/kvm exists; repro proves it with a boot and falls back to TCG if it fails" >&2
else
  echo "job: no /dev/kvm: TCG" >&2
fi

if [ -z "${REPRO_JOB_OUT:-}" ]; then rm -rf "$out"; fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
report_args=()
if [ "$is_path" = false ]; then
  "$repro" kernels --matrix --scenarios "$scenario" --kernel "$kernel" > "$work/expected.json"
  report_args=(--expect "$work/expected.json")
fi

set +e
"$repro" check --kernel "$kernel" --scenario "$scenario" -n "$iterations" --accel "$accel" --out "$out" --junit "$out/junit.xml" \
  2> >(tee "$work/stderr.log" >&2)
code=$?
# The table for the summary; a run that never started is a "no run" row.
"$repro" report "$out" "${report_args[@]}" > "$work/report.md" 2>> "$work/stderr.log"
set -e
# repro check's exit status is the verdict (0 clean, 1 regressed, 125
# inconclusive or could not test): it matches the expectation or the job fails.
if [ -n "${EXPECT:-}" ]; then
  expect=$EXPECT
elif [ "$is_path" = true ]; then
  expect=clean
else
  expect=$(jq -r '.include[0].expect' "$work/expected.json")
fi
case "$code" in
  0) verdict=clean ;;
  1) verdict=regressed ;;
  *) verdict=inconclusive ;;
esac
case "$expect:$code" in
  clean:0 | regressed:1) agree=0 ;;
  *) agree=1 ;;
esac

{
  echo "### $kernel on $scenario ($iterations iterations, --accel $accel)"
  echo
  echo "repro check exit $code ($verdict); expected $expect: the verdict $([ "$agree" = 0 ] && echo "matches" || echo "does NOT match") the expectation"
  echo
  cat "$work/report.md"
  if [ "$code" != 0 ] && [ "$code" != 1 ]; then
    echo
    echo '```'
    tail -n 25 "$work/stderr.log"
    echo '```'
  fi
} > "$out/job-summary.md"
cat "$out/job-summary.md" >&2
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$out/job-summary.md" >> "$GITHUB_STEP_SUMMARY"; fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    echo "verdict=$verdict"
    echo "exit-code=$code"
    echo "run-dir=$out"
    echo "junit=$([ -f "$out/junit.xml" ] && echo "$out/junit.xml")"
  } >> "$GITHUB_OUTPUT"
fi

# An annotation on the workflow run naming the kernel and the rule that decided.
if [ "$agree" != 0 ] && [ -n "${GITHUB_ACTIONS:-}" ]; then
  rule=$(jq -r '"\(.decided_by // "no verdict"): \(.rule // "")"' "$out/verdict.json" 2>/dev/null || echo "no verdict.json: the run did not happen")
  echo "::error title=repro $kernel / $scenario::verdict $verdict (repro check exit $code), expected $expect; $rule" | tr '\r\n' '  ' | head -c 2000
  echo
fi

if [ "${JOB_EXIT:-}" = expect ]; then
  [ "$agree" = 0 ] && exit 0
  echo "job: the verdict ($verdict, repro check exit $code) is not the expectation ($expect), or the run did not happen (see above)" >&2
  exit 1
fi
exit $code
