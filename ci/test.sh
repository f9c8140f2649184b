#!/usr/bin/env bash
# Set up and run the whole test suite: unit tests, CLI tests, and the
# end-to-end and fault tests that boot real kernels under QEMU (TCG).
# Kernels are fetched with apt into $REPRO_CACHE_DIR (default ~/.cache/repro),
# which CI may keep between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/setup.sh
# The CI scripts, workflows and action: shellcheck, actionlint, GitHub's schemas.
ci/lint.sh
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all --check; fi
if cargo clippy --version >/dev/null 2>&1; then cargo clippy --workspace --all-targets --locked -q -- -D warnings; fi
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --locked --no-fail-fast --ignore-default-filter "$@"
else
  exec cargo test --workspace --locked --no-fail-fast "$@"
fi
