#!/usr/bin/env bash
# Builds (once) and caches the Go peers the side-by-side bench (`npm run bench -- --peers`) compares
# against, from their pinned sources (never vendored into this repository):
#   vault-k8s    (github.com/hashicorp/vault-k8s)      the injector webhook
#   secrets-init (github.com/doitintl/secrets-init)    an init container / entrypoint for AWS
#   secret-init  (github.com/bank-vaults/secret-init)  the same, on aws-sdk-go-v2
# Pins (tag and commit) are in scripts/versions.env. Output: the bin directory, on stdout (last
# line); progress on stderr.
#
# Where the source comes from, in order:
#   1. the cache ($CACHE/src/peers/NAME-VERSION.tar), written by an earlier run;
#   2. the Go module proxy (`go mod download MODULE@VERSION`): vault-k8s and secret-init are modules
#      under their repository path. (secrets-init is not: its go.mod says `module secrets-init`, so
#      no proxy serves it, and a proxy may also refuse a module);
#   3. a git clone of the repository: SM_INJECTOR_PEER_GIT names a directory holding
#      OWNER+NAME/repo or OWNER/NAME git directories; the pinned commit is checked.
# Dependencies always come from the module proxy, checked against the peer's own go.sum.
#
# Usage: scripts/build-peers.sh [vault-k8s|secrets-init|secret-init ...]   (default: all three)
# Env:   SM_INJECTOR_CACHE  cache root (default: $HOME/.cache/sm-injector)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "${SCRIPT_DIR}/versions.env"

log() { printf '[build-peers] %s\n' "$*" >&2; }
die() {
  printf '[build-peers] error: %s\n' "$*" >&2
  exit 1
}

export GOTOOLCHAIN=local
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

CACHE_ROOT="${SM_INJECTOR_CACHE:-${HOME}/.cache/sm-injector}"
BIN_DIR="${CACHE_ROOT}/peers-vault-k8s${VAULT_K8S_VERSION}-secrets-init${SECRETS_INIT_VERSION}-secret-init${SECRET_INIT_VERSION}"
SRC_DIR="${CACHE_ROOT}/src/peers"

# name -> "repository module version commit"
peer() {
  case "$1" in
  vault-k8s) echo "hashicorp/vault-k8s github.com/hashicorp/vault-k8s ${VAULT_K8S_VERSION} ${VAULT_K8S_COMMIT}" ;;
  secrets-init) echo "doitintl/secrets-init secrets-init ${SECRETS_INIT_VERSION} ${SECRETS_INIT_COMMIT}" ;;
  secret-init) echo "bank-vaults/secret-init github.com/bank-vaults/secret-init ${SECRET_INIT_VERSION} ${SECRET_INIT_COMMIT}" ;;
  *) die "unknown peer '$1' (expected vault-k8s, secrets-init or secret-init)" ;;
  esac
}

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=(vault-k8s secrets-init secret-init); fi
for t in "${targets[@]}"; do peer "${t}" >/dev/null; done

missing=0
for t in "${targets[@]}"; do [[ -x "${BIN_DIR}/${t}" ]] || missing=1; done
if [[ ${missing} -eq 0 ]]; then
  printf '%s\n' "${BIN_DIR}"
  exit 0
fi

command -v go >/dev/null 2>&1 ||
  die "'go' was not found on PATH; it is needed once to build ${targets[*]} into ${BIN_DIR} (Go >= 1.26)."
mkdir -p "${BIN_DIR}" "${SRC_DIR}"
exec 9>"${CACHE_ROOT}/.build-peers.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
NICE=()
if command -v nice >/dev/null 2>&1; then NICE=(nice -n 10); fi

# source_tar NAME -> the path of NAME's source archive in the cache, fetching it first if needed.
source_tar() {
  local repo module version commit
  read -r repo module version commit <<<"$(peer "$1")"
  local tar="${SRC_DIR}/$1-${version}.tar"
  if [[ -s "${tar}" ]]; then
    printf '%s\n' "${tar}"
    return
  fi
  local dir=""
  if [[ "${module}" == */* ]] && dir="$(cd "${SRC_DIR}" && go mod download -json "${module}@${version}" 2>/dev/null |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')" && [[ -n "${dir}" && -d "${dir}" ]]; then
    log "$1 ${version}: source from the Go module proxy"
    tar -C "${dir}" -cf "${tar}.tmp" .
  else
    local git_dir=""
    local candidate
    for candidate in "${SM_INJECTOR_PEER_GIT:-}/${repo/\//+}/repo" "${SM_INJECTOR_PEER_GIT:-}/${repo}"; do
      if [[ -n "${SM_INJECTOR_PEER_GIT:-}" ]] && git -C "${candidate}" rev-parse --git-dir >/dev/null 2>&1; then
        git_dir="${candidate}"
        break
      fi
    done
    [[ -n "${git_dir}" ]] || die "$1 ${version}: the Go module proxy does not serve ${module}@${version}, and no git clone of ${repo} was given. Clone it (git clone https://github.com/${repo}) and set SM_INJECTOR_PEER_GIT to the directory that holds ${repo/\//+}/repo or ${repo}, then retry."
    local got
    got="$(git -C "${git_dir}" rev-parse "${version}^{commit}" 2>/dev/null)" ||
      die "$1: tag ${version} is not in ${git_dir} (fetch its tags)"
    [[ "${got}" == "${commit}" ]] || die "$1: tag ${version} is ${got} in ${git_dir}, pinned ${commit} (scripts/versions.env)"
    log "$1 ${version}: source from ${git_dir} at ${commit}"
    git -C "${git_dir}" archive --format=tar -o "${tar}.tmp" "${commit}"
  fi
  mv -f "${tar}.tmp" "${tar}"
  printf '%s\n' "${tar}"
}

build_peer() {
  local out="${BIN_DIR}/$1"
  if [[ -x "${out}" ]]; then
    log "$1: cached"
    return
  fi
  local tar start=${SECONDS}
  tar="$(source_tar "$1")"
  local work="${SRC_DIR}/$1-build"
  rm -rf "${work}"
  mkdir -p "${work}"
  tar -C "${work}" -xf "${tar}"
  chmod -R u+w "${work}"
  log "$1: building with $(go env GOVERSION) (first run takes a minute or more)…"
  (cd "${work}" && "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "${out}.tmp" .) ||
    die "$1: go build failed (see above)"
  mv -f "${out}.tmp" "${out}"
  rm -rf "${work}"
  log "$1: built in $((SECONDS - start)) s"
}

for t in "${targets[@]}"; do build_peer "${t}"; done
printf '%s\n' "${BIN_DIR}"
