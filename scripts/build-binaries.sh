#!/usr/bin/env bash
# Builds (once) and caches the binaries of the e2e test bed from the Go module proxy:
#   kube-apiserver (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3), helm (helm.sh/helm/v3),
#   hclfmt (github.com/hashicorp/hcl/v2: the HCL parser that checks `iam-policy --output terraform`).
# Versions are pinned in scripts/versions.env. Output: the bin directory, on stdout (last line).
# Progress goes to stderr. Nothing is written to the repository: the wrapper Go modules live under
# the cache directory.
#
# Usage: scripts/build-binaries.sh [kube-apiserver|etcd|helm|hclfmt ...]   (default: all four)
# Env:   SM_INJECTOR_CACHE  cache root (default: $HOME/.cache/sm-injector)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "${SCRIPT_DIR}/versions.env"

log() { printf '[build-binaries] %s\n' "$*" >&2; }
die() {
  printf '[build-binaries] error: %s\n' "$*" >&2
  exit 1
}

# Use the machine's Go (no toolchain download) and let the wrapper modules resolve their graph.
export GOTOOLCHAIN=local
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

CACHE_ROOT="${SM_INJECTOR_CACHE:-${HOME}/.cache/sm-injector}"
BIN_DIR="${CACHE_ROOT}/bin-k8s${KUBERNETES_VERSION}-etcd${ETCD_VERSION}-helm${HELM_VERSION}"
SRC_DIR="${CACHE_ROOT}/src"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=(kube-apiserver etcd helm hclfmt); fi
for t in "${targets[@]}"; do
  case "${t}" in
  kube-apiserver | etcd | helm | hclfmt) ;;
  *) die "unknown binary '${t}' (expected kube-apiserver, etcd, helm or hclfmt)" ;;
  esac
done

# Fast path: everything already built for these versions (no Go needed).
missing=0
for t in "${targets[@]}"; do
  [[ "${t}" == hclfmt ]] && t="hclfmt-${HCL_VERSION}"
  [[ -x "${BIN_DIR}/${t}" ]] || missing=1
done
if [[ ${missing} -eq 0 ]]; then
  printf '%s\n' "${BIN_DIR}"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  die "'go' was not found on PATH; it is needed once to build ${targets[*]} into ${BIN_DIR}. Install Go >= 1.26 (the 'go' line of k8s.io/kubernetes ${KUBERNETES_VERSION}) from https://go.dev/dl/ and retry."
fi
mkdir -p "${BIN_DIR}" "${SRC_DIR}"

# Serialize concurrent runs (parallel test processes) on the same cache.
exec 9>"${CACHE_ROOT}/.build.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

NICE=()
if command -v nice >/dev/null 2>&1; then NICE=(nice -n 10); fi

GO_VERSION="$(go env GOVERSION)"

# mod_info MODULE@VERSION FIELD -> a field (GoMod: its go.mod, Dir: its source) of the downloaded
# module in the module cache.
mod_info() {
  local json
  if ! json="$(cd "${SRC_DIR}" && go mod download -json "$1" 2>&1)"; then
    die "could not download $1 from the Go module proxy ($(go env GOPROXY)): $(printf '%s\n' "${json}" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' | head -n1)"
  fi
  printf '%s\n' "${json}" | sed -n "s/^[[:space:]]*\"$2\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p"
}
go_mod_of() { mod_info "$1" GoMod; }
dir_of() { mod_info "$1" Dir; }

# check_go_line GOMOD: fail clearly when the module needs a newer Go than the local one.
check_go_line() {
  local need
  need="$(awk '$1 == "go" { print $2; exit }' "$1")"
  if [[ -n "${need}" ]]; then
    local lowest
    lowest="$(printf '%s\n%s\n' "go${need}" "${GO_VERSION}" | sort -V | head -n1)"
    if [[ "${lowest}" != "go${need}" ]]; then
      die "$(basename "$(dirname "$1")") needs go ${need}, but the local Go is ${GO_VERSION} (GOTOOLCHAIN=local). Upgrade Go or pin an older version in scripts/versions.env."
    fi
  fi
}

elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# with_heartbeat NAME COMMAND...: runs COMMAND, logging "still building" every 20 s meanwhile (a Go
# build of kube-apiserver is silent for minutes).
with_heartbeat() {
  local name=$1
  shift
  local start=${SECONDS}
  # (sleep gets no inherited output fds: a left-over sleep must not hold a pipe open.)
  (while sleep 20 >/dev/null 2>&1; do log "${name}: still building… $(elapsed $((SECONDS - start)))"; done) &
  local beat=$!
  local rc=0
  "$@" || rc=$?
  kill "${beat}" 2>/dev/null || true
  wait "${beat}" 2>/dev/null || true
  return "${rc}"
}

build_kube_apiserver() {
  local out="${BIN_DIR}/kube-apiserver"
  if [[ -x "${out}" ]]; then
    log "kube-apiserver ${KUBERNETES_VERSION}: cached"
    return
  fi
  log "building kube-apiserver ${KUBERNETES_VERSION} with ${GO_VERSION} (first run takes several minutes)…"
  local start=${SECONDS}
  local mod="${SRC_DIR}/kube-apiserver-${KUBERNETES_VERSION}"
  mkdir -p "${mod}"
  local kgomod
  kgomod="$(go_mod_of "k8s.io/kubernetes@${KUBERNETES_VERSION}")"
  [[ -f "${kgomod}" ]] || die "could not download k8s.io/kubernetes@${KUBERNETES_VERSION}"
  check_go_line "${kgomod}"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 (replaced by ./staging/... in its own
  # repository); replace every one of them with the published v0.X.Y.
  local staging
  staging="$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "${kgomod}" | sort -u)"
  [[ -n "${staging}" ]] || die "no k8s.io staging modules found in ${kgomod}"
  {
    printf 'module sm-injector.local/kube-apiserver\n\ngo %s\n\n' "$(awk '$1 == "go" { print $2; exit }' "${kgomod}")"
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "${KUBERNETES_VERSION}"
    local m
    for m in ${staging}; do
      printf '\t%s => %s %s\n' "${m}" "${m}" "${KUBERNETES_STAGING_VERSION}"
    done
    printf ')\n'
  } >"${mod}/go.mod"
  local major minor
  major="$(echo "${KUBERNETES_VERSION#v}" | cut -d. -f1)"
  minor="$(echo "${KUBERNETES_VERSION#v}" | cut -d. -f2)"
  local ld="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION}"
    ld+=" -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
    ld+=" -X ${pkg}.gitTreeState=clean"
    ld+=" -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "${mod}" && with_heartbeat kube-apiserver "${NICE[@]}" go build -trimpath -ldflags "${ld}" -o "${out}.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv -f "${out}.tmp" "${out}"
  log "kube-apiserver ${KUBERNETES_VERSION}: built in $(elapsed $((SECONDS - start)))"
}

build_etcd() {
  local out="${BIN_DIR}/etcd"
  if [[ -x "${out}" ]]; then
    log "etcd ${ETCD_VERSION}: cached"
    return
  fi
  log "building etcd ${ETCD_VERSION} with ${GO_VERSION} (first run takes a few minutes)…"
  local start=${SECONDS}
  local mod="${SRC_DIR}/etcd-${ETCD_VERSION}"
  mkdir -p "${mod}"
  local egomod
  egomod="$(go_mod_of "go.etcd.io/etcd/server/v3@${ETCD_VERSION}")"
  [[ -f "${egomod}" ]] || die "could not download go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  check_go_line "${egomod}"
  printf 'module sm-injector.local/etcd\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$(awk '$1 == "go" { print $2; exit }' "${egomod}")" "${ETCD_VERSION}" >"${mod}/go.mod"
  cat >"${mod}/main.go" <<'GO'
// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 for the sm-injector e2e tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "${mod}" && with_heartbeat etcd "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "${out}.tmp" .)
  mv -f "${out}.tmp" "${out}"
  log "etcd ${ETCD_VERSION}: built in $(elapsed $((SECONDS - start)))"
}

build_helm() {
  local out="${BIN_DIR}/helm"
  if [[ -x "${out}" ]]; then
    log "helm ${HELM_VERSION}: cached"
    return
  fi
  log "building helm ${HELM_VERSION} with ${GO_VERSION} (first run takes a few minutes)…"
  local start=${SECONDS}
  local mod="${SRC_DIR}/helm-${HELM_VERSION}"
  mkdir -p "${mod}"
  local hgomod
  hgomod="$(go_mod_of "helm.sh/helm/v3@${HELM_VERSION}")"
  [[ -f "${hgomod}" ]] || die "could not download helm.sh/helm/v3@${HELM_VERSION}"
  check_go_line "${hgomod}"
  printf 'module sm-injector.local/helm\n\ngo %s\n\nrequire helm.sh/helm/v3 %s\n' \
    "$(awk '$1 == "go" { print $2; exit }' "${hgomod}")" "${HELM_VERSION}" >"${mod}/go.mod"
  # Helm's Makefile stamps its version and the Kubernetes version its `.Capabilities` default to
  # (derived from the k8s.io/client-go it is built with).
  local cg kmajor kminor
  cg="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "${hgomod}")"
  kmajor="$(($(echo "${cg#v}" | cut -d. -f1) + 1))"
  kminor="$(echo "${cg#v}" | cut -d. -f2)"
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg hdir
  hdir="$(dir_of "helm.sh/helm/v3@${HELM_VERSION}")"
  for pkg in pkg/chartutil pkg/lint/rules pkg/chart/common; do
    if grep -qs 'k8sVersionMajor' "${hdir}/${pkg}"/*.go; then
      ld+=" -X helm.sh/helm/v3/${pkg}.k8sVersionMajor=${kmajor} -X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${kminor}"
    fi
  done
  (cd "${mod}" && with_heartbeat helm "${NICE[@]}" go build -trimpath -ldflags "${ld}" -o "${out}.tmp" helm.sh/helm/v3/cmd/helm)
  mv -f "${out}.tmp" "${out}"
  log "helm ${HELM_VERSION}: built in $(elapsed $((SECONDS - start)))"
}

# hclfmt: the binary's name carries HCL_VERSION (BIN_DIR does not), so a new pin builds anew.
build_hclfmt() {
  local out="${BIN_DIR}/hclfmt-${HCL_VERSION}"
  if [[ -x "${out}" ]]; then
    log "hclfmt ${HCL_VERSION}: cached"
    return
  fi
  log "building hclfmt ${HCL_VERSION} with ${GO_VERSION}…"
  local start=${SECONDS}
  local mod="${SRC_DIR}/hclfmt-${HCL_VERSION}"
  mkdir -p "${mod}"
  local gomod
  gomod="$(go_mod_of "github.com/hashicorp/hcl/v2@${HCL_VERSION}")"
  [[ -f "${gomod}" ]] || die "could not download github.com/hashicorp/hcl/v2@${HCL_VERSION}"
  check_go_line "${gomod}"
  printf 'module sm-injector.local/hclfmt\n\ngo %s\n\nrequire github.com/hashicorp/hcl/v2 %s\n' \
    "$(awk '$1 == "go" { print $2; exit }' "${gomod}")" "${HCL_VERSION}" >"${mod}/go.mod"
  (cd "${mod}" && "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "${out}.tmp" github.com/hashicorp/hcl/v2/cmd/hclfmt)
  mv -f "${out}.tmp" "${out}"
  log "hclfmt ${HCL_VERSION}: built in $(elapsed $((SECONDS - start)))"
}

for t in "${targets[@]}"; do
  case "${t}" in
  kube-apiserver) build_kube_apiserver ;;
  etcd) build_etcd ;;
  helm) build_helm ;;
  hclfmt) build_hclfmt ;;
  esac
done

log "binaries in ${BIN_DIR}"
printf '%s\n' "${BIN_DIR}"
