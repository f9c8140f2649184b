#!/usr/bin/env bash
# Build repro's release assets: static repro and repro-agent (one static
# glibc build, .cargo/config.toml) in repro-x86_64-linux.tar.gz, and
# SHA256SUMS, which the action checks before it runs them.
#
#   ci/release.sh TAG DIR        e.g. ci/release.sh v1.0.0 dist
#
# The release workflow (ci/workflows/release.yml) runs this and publishes DIR.
set -euo pipefail
# shellcheck source=ci/common.sh
. "$(dirname "$0")/common.sh"
tag=${1:?usage: ci/release.sh TAG DIR}
out=${2:?usage: ci/release.sh TAG DIR}
case "$tag" in v[0-9]*.[0-9]*.[0-9]*) ;; *) echo "release: $tag is not a version tag (vMAJOR.MINOR.PATCH)" >&2; exit 2 ;; esac
want="repro ${tag#v}"
have=$(cargo metadata --no-deps --format-version 1 --manifest-path "$root/Cargo.toml" | jq -r '.packages[] | select(.name == "repro") | "repro \(.version)"')
if [ "$have" != "$want" ]; then
  echo "release: the tag says $want and Cargo.toml says $have: bump workspace.package.version first" >&2
  exit 2
fi
flags=()
[ "$profile" = release ] && flags+=(--release)
cargo build --workspace --locked "${flags[@]}" --manifest-path "$root/Cargo.toml" >&2
bin="${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/$profile"
for b in repro repro-agent; do
  command -v file >/dev/null || break
  file "$bin/$b" | grep -Eq "statically linked|static-pie linked" || { echo "release: $bin/$b is not static" >&2; exit 1; }
done
mkdir -p "$out"
tar -czf "$out/repro-x86_64-linux.tar.gz" -C "$bin" repro repro-agent
(cd "$out" && sha256sum repro-x86_64-linux.tar.gz > SHA256SUMS)
cat "$out/SHA256SUMS" >&2
