#!/usr/bin/env bash
# Build the catalog kernels of one source tree, one after another, into
# $REPRO_CACHE_DIR/images (the CI build job, runnable here):
#
#   ci/build-tree.sh 6.1-src,6.1-noprune,6.1-prune-aliases
#
# The first build compiles the tree; the others rebuild only what their
# patches change. Each uses the compiler its tree's era names.
set -euo pipefail
# shellcheck source=ci/common.sh
. "$(dirname "$0")/common.sh"
kernels=${1:?usage: ci/build-tree.sh KERNEL[,KERNEL...]}
repro_setup
IFS=, read -r -a names <<< "$kernels"
for k in "${names[@]}"; do
  echo "build: $k" >&2
  "$repro" image build "$k"
done
