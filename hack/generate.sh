#!/usr/bin/env bash
# Regenerates deepcopy functions and the MeshConfig CRD from apis/.
# Usage: hack/generate.sh [crd-output-dir]   (default charts/fsm-webhooks/crds)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
crd_dir="${1:-charts/fsm-webhooks/crds}"
mkdir -p "$crd_dir"
# allowDangerousTypes: FSM's schema has floating-point fields (pluginChains
# priority, v1alpha1 sampledFraction); keeping them "number" keeps objects
# written by FSM valid.
go tool controller-gen \
  object paths=./apis/... \
  crd:allowDangerousTypes=true,crdVersions=v1 paths=./apis/... \
  output:crd:artifacts:config="$crd_dir"
