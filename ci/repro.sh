#!/usr/bin/env bash
# Set up (QEMU, release build) and run repro with the given arguments:
#
#   ci/repro.sh run --kernel 6.1 --iterations 1000
set -euo pipefail
# shellcheck source=ci/common.sh
. "$(dirname "$0")/common.sh"
repro_setup
exec "$repro" "$@"
