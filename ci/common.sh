# Sourced by the CI scripts (not run on its own): where repro comes from.
#
#   repro_setup      install what repro needs (ci/setup.sh) and set $repro
#   repro_cli        only the host CLI, for jobs that boot nothing (the
#                    matrix, the report): no system packages, set $repro
#
# Environment, read here once for every script:
#   PROFILE          the cargo profile to build and run (default release)
#   CARGO_TARGET_DIR cargo's own: where the build lands (default target/)
#   REPRO_BIN_DIR    a directory holding released repro and repro-agent
#                    binaries (the action downloads and verifies them):
#                    used instead of building; setup then only installs
#                    the system packages
# shellcheck shell=bash
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=${PROFILE:-release}

repro_setup() {
  if [ -n "${REPRO_BIN_DIR:-}" ]; then
    SETUP_BUILD=0 "$root/ci/setup.sh"
    repro="$REPRO_BIN_DIR/repro"
  else
    PROFILE=$profile "$root/ci/setup.sh"
    repro="${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/$profile/repro"
  fi
  [ -x "$repro" ] || { echo "ci: $repro is missing after setup" >&2; exit 1; }
}

repro_cli() {
  if [ -n "${REPRO_BIN_DIR:-}" ]; then
    repro="$REPRO_BIN_DIR/repro"
  else
    local flags=()
    [ "$profile" = release ] && flags+=(--release)
    cargo build --locked -p repro --manifest-path "$root/Cargo.toml" "${flags[@]}" >&2
    repro="${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/$profile/repro"
  fi
  [ -x "$repro" ] || { echo "ci: $repro is missing" >&2; exit 1; }
}
