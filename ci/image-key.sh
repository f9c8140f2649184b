#!/usr/bin/env bash
# The CI cache key of one source tree's built images, from the names
# repro's own cache gives them on this machine (`repro image key`: the
# source package version apt offers now, the host compiler, the era rules,
# the patches), so a new linux-source or compiler is a new key:
#
#   ci/image-key.sh 6.1-src,6.1-noprune      prints key=<sha256 prefix>
#
# Run it where the images are built (the build job's container): the
# matrix job cannot know either input.
set -euo pipefail
# shellcheck source=ci/common.sh
. "$(dirname "$0")/common.sh"
kernels=${1:?usage: ci/image-key.sh KERNEL[,KERNEL...]}
repro_setup
entries=$("$repro" image key "$kernels")
echo "$entries" >&2
echo "key=$(sha256sum <<< "$entries" | cut -c1-24)"
