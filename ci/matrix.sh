#!/usr/bin/env bash
# The CI matrix from the catalog, split by where each job can run, for
# ci/workflows/repro.yml (and runnable here):
#
#   SCENARIOS=seed,held-fd ONLY_KERNEL=focal ci/matrix.sh matrix.json
#
# Writes `repro kernels --matrix` to the file named, then prints
# GITHUB_OUTPUT lines: built= (kernels the build job makes), debian= (from
# Debian's apt), any= (Ubuntu's packages, RPMs): the check jobs; trees= (one
# build job per source tree, with its kernels); and has_built=, has_debian=,
# has_any=, has_trees= (true|false), since GitHub rejects an empty matrix.
# Only the built kernels' checks wait for the build job. An unknown
# kernel or a matrix with nothing in it stops here with repro's message.
set -euo pipefail
# shellcheck source=ci/common.sh
. "$(dirname "$0")/common.sh"
out=${1:?usage: ci/matrix.sh OUT.json}
repro_cli
args=(kernels --matrix --scenarios "${SCENARIOS:-seed}")
if [ -n "${ONLY_KERNEL:-}" ]; then args+=(--kernel "$ONLY_KERNEL"); fi
"$repro" "${args[@]}" > "$out"
jq . "$out" >&2

built=$(jq -c '{include: [.include[] | select(.build != null)]}' "$out")
debian=$(jq -c '{include: [.include[] | select(.host == "debian" and .build == null)]}' "$out")
any=$(jq -c '{include: [.include[] | select(.host != "debian")]}' "$out")
trees=$(jq -c '{include: [.include[] | select(.build != null)] | group_by(.build)
  | map({tree: .[0].build, kernels: (map(.kernel) | unique | join(","))})}' "$out")
echo "built=$built"
echo "debian=$debian"
echo "any=$any"
echo "trees=$trees"
for m in built debian any trees; do
  n=$(jq '.include | length' <<< "${!m}")
  echo "has_$m=$([ "$n" -gt 0 ] && echo true || echo false)"
done
