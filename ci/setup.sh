#!/usr/bin/env bash
# Install what repro needs on a fresh Debian/Ubuntu machine and build it.
# Idempotent: a second run only checks. Needs root (or sudo) for apt.
#
#   ci/setup.sh            install QEMU and build tools, then `cargo build --workspace`
#   PROFILE=release ci/setup.sh
#   SETUP_BUILD=0 ci/setup.sh   only the system packages (repro comes from a release)
#
# It prints nothing on stdout, whatever apt and cargo say: CI steps capture
# the stdout of scripts that call it (`ci/image-key.sh >> "$GITHUB_OUTPUT"`),
# where GitHub's runner rejects every line that is not `key=value`.
set -euo pipefail
exec >&2
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
# Kernel builds (repro image build, the 6.1 variants).
for tool in make flex bison bc perl git; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ! command -v lz4 >/dev/null || ! command -v lz4c >/dev/null; then need+=(lz4); fi
# The CI scripts read JSON with jq. (The lint tooling is ci/lint.sh's.)
command -v jq >/dev/null || need+=(jq)
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
[ -f /usr/include/openssl/opensslv.h ] || need+=(libssl-dev)
command -v apt-get >/dev/null || { echo "setup: apt-get not found: repro's setup supports Debian and Ubuntu"; exit 1; }
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if [ "${SETUP_BUILD:-1}" = 0 ]; then
  echo "setup: system packages ready (SETUP_BUILD=0: repro itself comes from elsewhere)"
  exit 0
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install a Rust toolchain >= 1.87 with rustup (https://rustup.rs), then run this again"
  exit 1
fi
# No musl here: the agent is static glibc for this explicit target (see .cargo/config.toml).
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-gnu || rustup target add x86_64-unknown-linux-gnu 2>/dev/null || true

profile=${PROFILE:-debug}
flags=()
[ "$profile" = release ] && flags+=(--release)
cargo build --workspace --locked "${flags[@]}"
echo "setup: built target/x86_64-unknown-linux-gnu/$profile/{repro,repro-agent}"
