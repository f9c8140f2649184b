#!/usr/bin/env bash
# Install the workflow sources in ci/workflows/ where GitHub reads them.
# The integration test `workflows_are_installed_unchanged_and_valid` fails
# when .github/workflows/ and ci/workflows/ differ.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .github/workflows
for f in ci/workflows/*.yml; do cp "$f" ".github/workflows/$(basename "$f")"; done
echo "installed: $(ls ci/workflows)" >&2
