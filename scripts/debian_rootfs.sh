#!/usr/bin/env bash
# A pristine Debian 12 minbase root (debootstrap --variant=minbase bookworm, from this machine's
# mirror), made once and never written: the Debian package test mounts an overlay over it,
# and scripts/build_image.sh imports it as the image's default base. Prints its path.
# Usage: bash scripts/debian_rootfs.sh [DIR]   (default $OVNMETA_TEST_ROOTFS, else
#        /var/tmp/ovnmeta-test-rootfs/bookworm; DIR.complete marks a finished one)
set -euo pipefail
dir=${1:-${OVNMETA_TEST_ROOTFS:-/var/tmp/ovnmeta-test-rootfs/bookworm}}
if [ ! -e "$dir.complete" ]; then
    . "$(dirname "${BASH_SOURCE[0]}")/apt_need.sh"
    apt_need debootstrap
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    debootstrap --variant=minbase bookworm "$dir" "${mirror:-http://deb.debian.org/debian}" \
        >&2
    touch "$dir.complete"
fi
echo "$dir"
