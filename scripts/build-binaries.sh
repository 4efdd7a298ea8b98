#!/usr/bin/env bash
# Builds (once) and caches the binaries of the e2e test bed from the Go module proxy:
#   control plane: kube-apiserver (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3), helm (helm.sh/helm/v3);
#   tools:          hclfmt (github.com/hashicorp/hcl/v2: the HCL parser that checks `iam-policy --output terraform`);
#   the real node:  kubelet, kube-controller-manager, kube-scheduler, kube-proxy (k8s.io/kubernetes),
#                   coredns (github.com/coredns/coredns: the cluster DNS), containerd,
#                   containerd-shim-runc-v2, ctr (github.com/containerd/containerd/v2), the pause image
#                   (build/pause/linux/pause.c of k8s.io/kubernetes, static, in a FROM-scratch OCI archive),
#                   a busybox image (Debian's busybox-static, FROM scratch) for tests,
#                   and the Debian packages the node needs (runc, CNI plugins, image tools).
# Versions are pinned in scripts/versions.env. Output: the bin directory, on stdout (last line); every
# binary is in it (containerd's as symlinks into its own versioned directory), the images are
# <bin>/images/pause.oci.tar and busybox.oci.tar. Progress goes to stderr. Nothing is written to the
# repository: the wrapper Go modules live under the cache directory.
#
# Usage: scripts/build-binaries.sh [TARGET ...]   (default: all)
#   TARGET: kube-apiserver etcd helm | hclfmt | kubelet kube-controller-manager kube-scheduler kube-proxy
#           coredns containerd node-packages pause-image busybox-image | control-plane (the first three) |
#           node (the last nine)
# Env:   SM_INJECTOR_CACHE  cache root (default: $HOME/.cache/sm-injector)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/versions.env
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

# containerd's binaries live in a directory of their own version (BIN_DIR's name predates them);
# BIN_DIR holds symlinks to them.
CONTAINERD_DIR="${CACHE_ROOT}/bin-containerd${CONTAINERD_VERSION}"
CONTAINERD_BINS=(containerd containerd-shim-runc-v2 ctr)
PAUSE_IMAGE="${BIN_DIR}/images/pause.oci.tar"
# The image name kubelet and containerd know the sandbox image by (nothing is pulled: see pause-image).
PAUSE_IMAGE_NAME="registry.k8s.io/pause:${PAUSE_VERSION}"
# The tests' smallest image (busybox-image).
BUSYBOX_IMAGE="${BIN_DIR}/images/busybox.oci.tar"
BUSYBOX_IMAGE_NAME="sm-injector.local/busybox:static"
# Debian packages of the real node: OCI runtime, CNI plugins (/usr/lib/cni), image tools.
NODE_PACKAGES=(runc containernetworking-plugins umoci skopeo buildah mmdebstrap busybox-static)
CONTROL_PLANE_TARGETS=(kube-apiserver etcd helm)
TOOL_TARGETS=(hclfmt)
NODE_TARGETS=(kubelet kube-controller-manager kube-scheduler kube-proxy coredns containerd node-packages pause-image busybox-image)

targets=()
for t in "${@:-all}"; do
  case "${t}" in
  all) targets+=("${CONTROL_PLANE_TARGETS[@]}" "${TOOL_TARGETS[@]}" "${NODE_TARGETS[@]}") ;;
  control-plane) targets+=("${CONTROL_PLANE_TARGETS[@]}") ;;
  node) targets+=("${NODE_TARGETS[@]}") ;;
  kube-apiserver | etcd | helm | hclfmt | kubelet | kube-controller-manager | kube-scheduler | kube-proxy | coredns | containerd | node-packages | pause-image | busybox-image)
    targets+=("${t}")
    ;;
  *) die "unknown target '${t}' (expected ${CONTROL_PLANE_TARGETS[*]} ${TOOL_TARGETS[*]} ${NODE_TARGETS[*]}, control-plane, node or all)" ;;
  esac
done

# packages_missing: the NODE_PACKAGES not installed (dpkg), one per line.
packages_missing() {
  local p
  for p in "${NODE_PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "${p}" 2>/dev/null)" == "install ok installed" ]] || printf '%s\n' "${p}"
  done
}

# is_ready TARGET: the target is built (or installed) for the pinned versions.
is_ready() {
  case "$1" in
  containerd)
    local b
    for b in "${CONTAINERD_BINS[@]}"; do
      [[ -x "${CONTAINERD_DIR}/${b}" && "$(readlink "${BIN_DIR}/${b}" 2>/dev/null)" == "${CONTAINERD_DIR}/${b}" ]] || return 1
    done
    ;;
  node-packages) [[ -z "$(packages_missing)" ]] ;;
  pause-image) [[ -s "${PAUSE_IMAGE}" ]] ;;
  busybox-image) [[ -s "${BUSYBOX_IMAGE}" ]] ;;
  # The binary's name carries HCL_VERSION (BIN_DIR's does not), so a new pin builds anew.
  hclfmt) [[ -x "${BIN_DIR}/hclfmt-${HCL_VERSION}" ]] ;;
  coredns) [[ -x "${BIN_DIR}/coredns-${COREDNS_VERSION}" ]] ;;
  *) [[ -x "${BIN_DIR}/$1" ]] ;;
  esac
}

# Fast path: everything already built for these versions (no Go needed).
missing=0
for t in "${targets[@]}"; do is_ready "${t}" || missing=1; done
if [[ ${missing} -eq 0 ]]; then
  printf '%s\n' "${BIN_DIR}"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  die "'go' was not found on PATH; it is needed once to build ${targets[*]} into ${BIN_DIR}. Install Go >= 1.26.6 (the 'go' line of k8s.io/kubernetes ${KUBERNETES_VERSION} and containerd ${CONTAINERD_VERSION}) from https://go.dev/dl/ and retry."
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

# kubernetes_module: writes the wrapper module that builds commands of k8s.io/kubernetes (one module
# for all of them, so they share its resolution and the Go build cache); prints its directory.
kubernetes_module() {
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
  printf '%s\n' "${mod}"
}

# kubernetes_ldflags: the version stamps of the Kubernetes release build (`--version`, /version).
kubernetes_ldflags() {
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
  printf '%s\n' "${ld}"
}

# build_kubernetes CMD...: builds the commands of k8s.io/kubernetes (kube-apiserver, kubelet, ...)
# that are not cached yet, in one `go build` (their shared packages compile once).
build_kubernetes() {
  local todo=() c
  for c in "$@"; do
    if [[ -x "${BIN_DIR}/${c}" ]]; then log "${c} ${KUBERNETES_VERSION}: cached"; else todo+=("${c}"); fi
  done
  [[ ${#todo[@]} -gt 0 ]] || return 0
  log "building ${todo[*]} ${KUBERNETES_VERSION} with ${GO_VERSION} (first run takes several minutes)…"
  local start=${SECONDS}
  local mod ld
  mod="$(kubernetes_module)"
  ld="$(kubernetes_ldflags)"
  local tmp="${BIN_DIR}/.build-$$"
  mkdir -p "${tmp}"
  local pkgs=()
  for c in "${todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${c}"); done
  (cd "${mod}" && with_heartbeat "${todo[*]}" "${NICE[@]}" go build -trimpath -ldflags "${ld}" -o "${tmp}/" "${pkgs[@]}")
  for c in "${todo[@]}"; do mv -f "${tmp}/${c}" "${BIN_DIR}/${c}"; done
  rmdir "${tmp}"
  log "${todo[*]} ${KUBERNETES_VERSION}: built in $(elapsed $((SECONDS - start)))"
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

# build_coredns: CoreDNS with its default plugin set (plugin.cfg of the release: kubernetes, forward,
# cache, ...), the cluster DNS of the real node. Named coredns-VERSION (BIN_DIR's name does not carry it).
build_coredns() {
  local out="${BIN_DIR}/coredns-${COREDNS_VERSION}"
  if [[ -x "${out}" ]]; then
    log "coredns ${COREDNS_VERSION}: cached"
    return
  fi
  log "building coredns ${COREDNS_VERSION} with ${GO_VERSION} (first run takes a few minutes)…"
  local start=${SECONDS}
  local mod="${SRC_DIR}/coredns-${COREDNS_VERSION}"
  mkdir -p "${mod}"
  local gomod
  gomod="$(go_mod_of "github.com/coredns/coredns@${COREDNS_VERSION}")"
  [[ -f "${gomod}" ]] || die "could not download github.com/coredns/coredns@${COREDNS_VERSION}"
  check_go_line "${gomod}"
  # CoreDNS's own replace directives do not apply to a dependent module: copy them.
  {
    printf 'module sm-injector.local/coredns\n\ngo %s\n\nrequire github.com/coredns/coredns %s\n' \
      "$(awk '$1 == "go" { print $2; exit }' "${gomod}")" "${COREDNS_VERSION}"
    awk '/^replace \(/ { inblock = 1; print; next } inblock { print; if ($1 == ")") inblock = 0; next } /^replace / { print }' "${gomod}"
  } >"${mod}/go.mod"
  (cd "${mod}" && with_heartbeat coredns "${NICE[@]}" go build -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=${COREDNS_VERSION}" -o "${out}.tmp" github.com/coredns/coredns)
  mv -f "${out}.tmp" "${out}"
  log "coredns ${COREDNS_VERSION}: built in $(elapsed $((SECONDS - start)))"
}

build_containerd() {
  if is_ready containerd; then
    log "containerd ${CONTAINERD_VERSION}: cached"
    return
  fi
  log "building containerd, containerd-shim-runc-v2, ctr ${CONTAINERD_VERSION} with ${GO_VERSION} (first run takes a few minutes)…"
  local start=${SECONDS}
  local mod="${SRC_DIR}/containerd-${CONTAINERD_VERSION}"
  mkdir -p "${mod}" "${CONTAINERD_DIR}"
  local cgomod
  cgomod="$(go_mod_of "github.com/containerd/containerd/v2@${CONTAINERD_VERSION}")"
  [[ -f "${cgomod}" ]] || die "could not download github.com/containerd/containerd/v2@${CONTAINERD_VERSION}"
  check_go_line "${cgomod}"
  printf 'module sm-injector.local/containerd\n\ngo %s\n\nrequire github.com/containerd/containerd/v2 %s\n' \
    "$(awk '$1 == "go" { print $2; exit }' "${cgomod}")" "${CONTAINERD_VERSION}" >"${mod}/go.mod"
  # containerd's Makefile: version stamps, the urfave_cli_no_docs tag, and no_grpc for the shim.
  local pkg=github.com/containerd/containerd/v2
  local ld="-s -w -X ${pkg}/version.Version=${CONTAINERD_VERSION} -X ${pkg}/version.Package=${pkg}"
  local tmp="${CONTAINERD_DIR}/.build-$$"
  mkdir -p "${tmp}"
  (cd "${mod}" && with_heartbeat "containerd, ctr" "${NICE[@]}" go build -trimpath -tags urfave_cli_no_docs \
    -ldflags "${ld}" -o "${tmp}/" "${pkg}/cmd/containerd" "${pkg}/cmd/ctr")
  (cd "${mod}" && with_heartbeat containerd-shim-runc-v2 "${NICE[@]}" go build -trimpath -tags "urfave_cli_no_docs no_grpc" \
    -ldflags "${ld}" -o "${tmp}/" "${pkg}/cmd/containerd-shim-runc-v2")
  local b
  for b in "${CONTAINERD_BINS[@]}"; do
    mv -f "${tmp}/${b}" "${CONTAINERD_DIR}/${b}"
    ln -sfn "${CONTAINERD_DIR}/${b}" "${BIN_DIR}/${b}"
  done
  rmdir "${tmp}"
  log "containerd ${CONTAINERD_VERSION}: built in $(elapsed $((SECONDS - start)))"
}

# install_node_packages: the Debian packages of the real node (apt-get; waits for other installers).
install_node_packages() {
  local missing
  mapfile -t missing < <(packages_missing)
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "Debian packages (${NODE_PACKAGES[*]}): installed"
    return
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "the real node needs these packages: ${missing[*]}; install them with your system's package manager and retry."
  [[ ${EUID} -eq 0 ]] || die "installing ${missing[*]} needs root (or install them yourself: apt-get install ${missing[*]})."
  log "installing ${missing[*]} from Debian…"
  local start=${SECONDS}
  local apt=(apt-get -o DPkg::Lock::Timeout=900 -qq)
  export DEBIAN_FRONTEND=noninteractive
  # Package lists may be missing or stale on a fresh machine: update once, then retry.
  if ! "${apt[@]}" install -y "${missing[@]}" >&2; then
    "${apt[@]}" update >&2
    "${apt[@]}" install -y "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed (see above)"
  fi
  log "Debian packages: installed in $(elapsed $((SECONDS - start)))"
}

# scratch_image ARCHIVE NAME ROOTFS [umoci config flags...]: a FROM-scratch image of the files in
# ROOTFS (umoci), written as an OCI archive (skopeo) that `ctr images import` names NAME.
scratch_image() {
  local archive=$1 name=$2 rootfs=$3
  shift 3
  local tool
  for tool in umoci skopeo; do
    command -v "${tool}" >/dev/null 2>&1 || die "'${tool}' is needed to build ${name} (target node-packages installs it)"
  done
  local oci
  oci="$(mktemp -d)"
  umoci init --layout "${oci}/layout" >&2
  umoci new --image "${oci}/layout:img" >&2
  umoci unpack --image "${oci}/layout:img" "${oci}/bundle" >&2
  cp -a "${rootfs}/." "${oci}/bundle/rootfs/"
  umoci repack --image "${oci}/layout:img" "${oci}/bundle" >&2
  umoci config --image "${oci}/layout:img" --os linux --architecture amd64 "$@" >&2
  mkdir -p "$(dirname "${archive}")"
  skopeo copy --quiet "oci:${oci}/layout:img" "oci-archive:${archive}.tmp:${name}" >&2
  mv -f "${archive}.tmp" "${archive}"
  rm -rf "${oci}"
}

# build_pause_image: the sandbox ("pause") image without a registry: pause.c from k8s.io/kubernetes,
# linked statically, alone in a FROM-scratch image named PAUSE_IMAGE_NAME.
build_pause_image() {
  if is_ready pause-image; then
    log "pause image ${PAUSE_VERSION}: cached"
    return
  fi
  command -v gcc >/dev/null 2>&1 || die "gcc is needed to build the pause image (apt-get install gcc libc6-dev)"
  log "building the pause image ${PAUSE_VERSION} (pause.c of k8s.io/kubernetes ${KUBERNETES_VERSION})…"
  local start=${SECONDS}
  local kdir rootfs
  kdir="$(dir_of "k8s.io/kubernetes@${KUBERNETES_VERSION}")"
  rootfs="$(mktemp -d)"
  # The flags of build/pause/Makefile (CFLAGS).
  gcc -Os -Wall -Werror -static "-DVERSION=v${PAUSE_VERSION}-${KUBERNETES_VERSION}" \
    -o "${rootfs}/pause" "${kdir}/build/pause/linux/pause.c" >&2 ||
    die "could not link pause.c statically (apt-get install libc6-dev)"
  strip "${rootfs}/pause"
  # build/pause/Dockerfile: ENTRYPOINT ["/pause"], USER 65535:65535.
  scratch_image "${PAUSE_IMAGE}" "${PAUSE_IMAGE_NAME}" "${rootfs}" \
    --config.entrypoint /pause --config.user 65535:65535
  rm -rf "${rootfs}"
  log "pause image ${PAUSE_IMAGE_NAME}: ${PAUSE_IMAGE} in $(elapsed $((SECONDS - start)))"
}

# build_busybox_image: the tests' smallest image: Debian's static busybox and its applets, FROM scratch.
build_busybox_image() {
  if is_ready busybox-image; then
    log "busybox image: cached"
    return
  fi
  local busybox=/bin/busybox
  [[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" == "install ok installed" ]] ||
    die "the image needs Debian's busybox-static (target node-packages installs it)"
  log "building the busybox image ${BUSYBOX_IMAGE_NAME}…"
  local rootfs
  rootfs="$(mktemp -d)"
  mkdir -p "${rootfs}/bin" "${rootfs}/tmp"
  chmod 1777 "${rootfs}/tmp"
  cp "${busybox}" "${rootfs}/bin/busybox"
  local applet
  for applet in $("${busybox}" --list); do
    [[ -e "${rootfs}/bin/${applet}" ]] || ln -s busybox "${rootfs}/bin/${applet}"
  done
  scratch_image "${BUSYBOX_IMAGE}" "${BUSYBOX_IMAGE_NAME}" "${rootfs}" \
    --config.cmd /bin/sh --config.env PATH=/bin
  rm -rf "${rootfs}"
  log "busybox image: ${BUSYBOX_IMAGE}"
}

kubernetes_cmds=()
for t in "${targets[@]}"; do
  case "${t}" in
  kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy) kubernetes_cmds+=("${t}") ;;
  esac
done
# Packages first: the pause image needs umoci and skopeo.
for t in "${targets[@]}"; do [[ "${t}" != node-packages ]] || install_node_packages; done
if [[ ${#kubernetes_cmds[@]} -gt 0 ]]; then build_kubernetes "${kubernetes_cmds[@]}"; fi
for t in "${targets[@]}"; do
  case "${t}" in
  etcd) build_etcd ;;
  helm) build_helm ;;
  hclfmt) build_hclfmt ;;
  coredns) build_coredns ;;
  containerd) build_containerd ;;
  pause-image) build_pause_image ;;
  busybox-image) build_busybox_image ;;
  esac
done

log "binaries in ${BIN_DIR}"
printf '%s\n' "${BIN_DIR}"
