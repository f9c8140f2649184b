# Sourced by the ci/bench-*.sh scripts (not run on its own): the release
# build through ci/setup.sh, a work directory removed on exit, and the
# guest settings. Sets root, repro, work, accel and cpus; `churn_ref`
# builds the C reference loop (../shared/bench/churn-ref.c, or
# $CHURN_REF_SRC) into $work/churn-ref.
# shellcheck shell=bash
# shellcheck source=ci/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
accel=${ACCEL:-tcg}; cpus=${CPUS:-2}
repro_setup
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export root repro work accel cpus

churn_ref() {
  local src=${CHURN_REF_SRC:-$root/../shared/bench/churn-ref.c}
  [ -f "$src" ] || { echo "bench: $src not found; set CHURN_REF_SRC to churn-ref.c" >&2; exit 1; }
  gcc -O2 -static -o "$work/churn-ref" "$src"
}
