#!/usr/bin/env bash
# Set up (QEMU, release build) and run repro with the given arguments:
#
#   ci/repro.sh run --kernel 6.1 --iterations 1000
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
PROFILE=release "$here/ci/setup.sh"
exec "$here/target/x86_64-unknown-linux-gnu/release/repro" "$@"
