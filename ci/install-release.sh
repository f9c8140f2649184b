#!/usr/bin/env bash
# Download repro's released binaries for the action, verify them, and hand
# them to the next steps ($REPRO_BIN_DIR in $GITHUB_ENV), so a job that uses
# the action does not compile repro (~9 minutes on a 2-core runner).
#
#   ci/install-release.sh VERSION DIR
#
# VERSION is a release tag (v1, v1.2.0: what the action was used at, or its
# repro-version input). Anything else (a branch such as main, a commit, or
# nothing: the action used from a checkout) has no release: the job builds
# repro from source, as it does before any release exists. A release that
# cannot be downloaded falls back the same way, saying so; one whose
# checksum does not match fails the step.
#
# Environment: REPRO_RELEASE_URL, the releases' base URL
# (default https://github.com/$GITHUB_ACTION_REPOSITORY/releases/download).
set -euo pipefail
version=${1-}
dir=${2:?usage: ci/install-release.sh VERSION DIR}
repository=${GITHUB_ACTION_REPOSITORY-}
# Inside a composite action the runner may leave github.action_ref and
# action_repository empty; it checks an action used as OWNER/REPO/ci/action@REF
# out at .../_actions/OWNER/REPO/REF/ci/action, which says both.
case "${GITHUB_ACTION_PATH-}" in
  */_actions/*/*/*/ci/action)
    at=${GITHUB_ACTION_PATH%/ci/action}
    [ -n "$version" ] || version=${at##*/}
    at=${at%/*}
    owner=${at%/*}
    [ -n "$repository" ] || repository="${owner##*/}/${at##*/}"
    ;;
esac
asset=repro-x86_64-linux.tar.gz
case "$version" in
  v[0-9]*) ;;
  *)
    echo "install: '${version:-no ref}' names no release: repro is built from source (about 9 minutes)" >&2
    exit 0 ;;
esac
case "$version" in *[!A-Za-z0-9._-]*) echo "::error::repro-version '$version' is not a release tag" ; exit 1 ;; esac
base=${REPRO_RELEASE_URL:-https://github.com/$repository/releases/download}
mkdir -p "$dir"
get() { curl -fsSL --retry 3 --connect-timeout 20 --max-time 300 -o "$dir/$1" "$base/$version/$1"; }
if ! get "$asset" || ! get SHA256SUMS; then
  echo "install: no release $version at $base: repro is built from source instead (about 9 minutes)" >&2
  exit 0
fi
# The checksum file lists the archive; a mismatch is a broken or altered download.
if ! (cd "$dir" && grep -E "^[0-9a-f]{64}  $asset\$" SHA256SUMS | sha256sum -c --status -); then
  echo "::error::repro $version: $asset does not match the sha256 in the release's SHA256SUMS: the download is damaged or altered; nothing was installed"
  exit 1
fi
mkdir -p "$dir/bin"
tar -xzf "$dir/$asset" -C "$dir/bin" --no-same-owner repro repro-agent
"$dir/bin/repro" --version >&2
echo "install: repro $version from the release, sha256 verified" >&2
if [ -n "${GITHUB_ENV:-}" ]; then echo "REPRO_BIN_DIR=$dir/bin" >> "$GITHUB_ENV"; fi
