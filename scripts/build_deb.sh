#!/usr/bin/env bash
# Builds the Debian package from debian/ with Debian's own tools (dpkg-buildpackage, debhelper,
# pybuild), in a copy of the source tree, and puts ovnmeta_<version>_all.deb in dist/.
# Usage: bash scripts/build_deb.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
PKGS=(dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
      python3-wheel python3-build python3-installer fakeroot)
. scripts/apt_need.sh
apt_need "${PKGS[@]}"
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' ovnmeta/__init__.py)
work=$(mktemp -d /var/tmp/ovnmeta-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src="$work/ovnmeta-$version"
mkdir -p "$src" "$out"
# What git tracks, and new files not ignored: never .venv, build output or caches.
git ls-files -z --cached --others --exclude-standard | \
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done | \
    tar --null -T - -cf - | tar -C "$src" -xf -
# Debian's python3, not one on PATH before it (pyenv): pybuild builds with `python3.11`.
(cd "$src" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1) || {
    tail -40 "$work/build.log" >&2; echo "build_deb: dpkg-buildpackage failed" >&2; exit 1; }
cp "$work"/ovnmeta_"$version"_all.deb "$out/"
echo "$out/ovnmeta_${version}_all.deb"
