#!/usr/bin/env bash
# Build the real test control plane binaries (kube-apiserver, etcd, helm) from pinned Go modules,
# cached under ~/.cache/cleanup-operator/ so only the first run pays. Idempotent: a binary that
# exists and reports the pinned version is not rebuilt. Prints the bin directory on the last line.
#
# KUBEBUILDER_ASSETS, when set, wins: its kube-apiserver and etcd are used as they are.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
HELM_VERSION="${HELM_VERSION:-3.22.0}"
CACHE="${CLEANUP_OPERATOR_CACHE:-$HOME/.cache/cleanup-operator}"
BIN="$CACHE/bin"
WORK="$CACHE/build"
mkdir -p "$BIN" "$WORK"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

log() { echo "[tools] $*" >&2; }

has_version() { # binary, expected substring (helm says `helm version`, the others `--version`)
  # The output is captured first and matched in the shell: piping it into `grep -q` under
  # `set -o pipefail` fails the pipe whenever grep exits early and the writer gets SIGPIPE,
  # which made a cached binary look missing and rebuilt it.
  [ -x "$1" ] || return 1
  local out
  if [ "$(basename "$1")" = helm ]; then out=$("$1" version --short 2>/dev/null) || return 1
  else out=$("$1" --version 2>/dev/null) || return 1; fi
  [[ "$out" == *"$2"* ]]
}

build_kube_apiserver() {
  local out="$BIN/kube-apiserver"
  if has_version "$out" "v$K8S_VERSION"; then log "kube-apiserver v$K8S_VERSION cached"; return; fi
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  local dir="$WORK/kube-apiserver-$K8S_VERSION"
  mkdir -p "$dir"
  log "building kube-apiserver v$K8S_VERSION (first run only; several minutes on 2 cores)"
  ( cd "$dir"
    go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" > dl.json
    local kmod; kmod=$(python3 -c 'import json,sys; print(json.load(open("dl.json"))["GoMod"])')
    # Every k8s.io/* staging module the release replaces with ./staging/... gets its published v0.Y.Z.
    {
      echo "module cleanup-operator/hack/kube-apiserver"
      echo
      echo "go 1.26.0"
      echo
      echo "require k8s.io/kubernetes v$K8S_VERSION"
      echo
      grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$kmod" | awk -v v="v0.$minor.${K8S_VERSION##*.}" '{print "replace " $1 " => " $1 " " v}'
    } > go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
    go mod tidy >/dev/null 2>&1 || go mod tidy
    go build -o "$out" \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
      k8s.io/kubernetes/cmd/kube-apiserver
  )
  has_version "$out" "v$K8S_VERSION" || { log "kube-apiserver --version does not report v$K8S_VERSION"; exit 1; }
}

build_etcd() {
  local out="$BIN/etcd"
  if has_version "$out" "$ETCD_VERSION"; then log "etcd $ETCD_VERSION cached"; return; fi
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  log "building etcd $ETCD_VERSION"
  ( cd "$dir"
    cat > go.mod <<GOMOD
module cleanup-operator/hack/etcd

go 1.24

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
GOMOD
    cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    go mod tidy >/dev/null 2>&1 || go mod tidy
    go build -o "$out" -ldflags "-s -w" .
  )
  has_version "$out" "$ETCD_VERSION" || { log "etcd --version does not report $ETCD_VERSION"; exit 1; }
}

build_helm() {
  local out="$BIN/helm"
  if has_version "$out" "v$HELM_VERSION"; then log "helm v$HELM_VERSION cached"; return; fi
  log "building helm v$HELM_VERSION"
  GOBIN="$BIN" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  has_version "$out" "v$HELM_VERSION" || { log "helm version does not report v$HELM_VERSION"; exit 1; }
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS: using its kube-apiserver and etcd"
  "$KUBEBUILDER_ASSETS/kube-apiserver" --version >&2
  "$KUBEBUILDER_ASSETS/etcd" --version >&2
else
  build_etcd
  build_kube_apiserver
fi
if [ "${SKIP_HELM:-}" != "1" ]; then build_helm; fi
echo "$BIN"
