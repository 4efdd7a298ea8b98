#!/usr/bin/env bash
# mmdebstrap --extract-hook for the distroless-like images (scripts/build-images.sh), run on the host
# while the downloaded .debs are still in the rootfs' apt cache:
# - the files of the packages in DROP_PACKAGES are deleted again. apt pulls them in as dependencies
#   of what we want (ca-certificates -> openssl, debconf; tzdata -> debconf), but nothing in the image
#   runs their maintainer scripts or binaries, so they are dead weight and a larger attack surface;
# - every package that stays gets a dpkg status stanza in /var/lib/dpkg/status.d/<package>, as
#   distroless does, so image scanners (trivy, grype, syft) still see the Debian packages and versions.
#
#   DROP_PACKAGES="debconf openssl" bash images/rootfs/extract-hook.sh ROOTFS
set -euo pipefail

root="$1"
archives="${root}/var/cache/apt/archives"
drop=" ${DROP_PACKAGES:-} "

remove_package_files() {
  # Files and symlinks only: directories may be shared with packages that stay.
  dpkg-deb --fsys-tarfile "$1" | tar -t | while IFS= read -r f; do
    f="${f#./}"
    [[ -n "${f}" && "${f}" != */ ]] || continue
    if [[ -L "${root}/${f}" || -f "${root}/${f}" ]]; then rm -f "${root:?}/${f}"; fi
  done
}

write_status_stanza() {
  local pkg="$1" deb="$2"
  mkdir -p "${root}/var/lib/dpkg/status.d"
  {
    echo "Package: ${pkg}"
    echo "Status: install ok installed"
    dpkg-deb --field "${deb}" Version Architecture Source Maintainer Depends Description
  } >"${root}/var/lib/dpkg/status.d/${pkg}"
}

for deb in "${archives}"/*.deb; do
  [[ -e "${deb}" ]] || continue
  pkg="$(dpkg-deb --field "${deb}" Package)"
  if [[ "${drop}" == *" ${pkg} "* ]]; then
    remove_package_files "${deb}"
  else
    write_status_stanza "${pkg}" "${deb}"
  fi
done
