#!/usr/bin/env bash
# Fails (with a diff) when committed deepcopy code or CRD YAML is stale.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Work on a copy so a stale tree is reported, never modified.
mkdir -p "$tmp/src"
cp -a "$root/go.mod" "$root/go.sum" "$root/apis" "$root/hack" "$tmp/src/"
mkdir -p "$tmp/src/charts/fsm-webhooks"
cp -a "$root/charts/fsm-webhooks/crds" "$tmp/src/charts/fsm-webhooks/"
# The apis packages import nothing else of ours, so this is all generate.sh
# needs.
(cd "$tmp/src" && hack/generate.sh)
status=0
diff -ru "$root/apis" "$tmp/src/apis" || status=1
diff -ru "$root/charts/fsm-webhooks/crds" "$tmp/src/charts/fsm-webhooks/crds" || status=1
if [ "$status" -ne 0 ]; then
  echo "generated files are stale: run hack/generate.sh and commit the result" >&2
fi
exit "$status"
