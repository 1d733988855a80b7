#!/usr/bin/env bash
# Builds ovnmeta's container image with podman from container/Containerfile.
# Usage: bash scripts/build_image.sh [TAG] [BASE]
#   TAG   default localhost/ovnmeta:<version>
#   BASE  a Debian 12 based image; default localhost/debian:bookworm, which this script makes
#         from Debian's packages (scripts/debian_rootfs.sh, then podman import) when it is
#         missing, since this machine has no registry.
# Prints the image's tag and size. Needs podman and runc (docs/install.md: containers).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' ovnmeta/__init__.py)
tag=${1:-localhost/ovnmeta:$version}
base=${2:-localhost/debian:bookworm}
. scripts/podman_env.sh
if [ "$base" = localhost/debian:bookworm ] && ! podman image exists "$base"; then
    root=$(bash scripts/debian_rootfs.sh 2>/dev/null)
    tar -C "$root" -c . | podman import -q - "$base" >/dev/null
fi
ctx=$(mktemp -d /var/tmp/ovnmeta-image.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
bash scripts/build_deb.sh "$ctx" >/dev/null
cp container/Containerfile container/neutron-ovn-metadata-agent container/healthcheck_port "$ctx/"
podman build -q --network host --build-arg BASE="$base" -t "$tag" "$ctx" >/dev/null
echo "$tag $(podman image inspect --format '{{.Size}}' "$tag") bytes"
