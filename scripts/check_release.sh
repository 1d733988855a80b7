#!/usr/bin/env bash
# Release checks: `python -m build` makes the sdist and the wheel, `twine check` passes, and
# the wheel installs in a fresh venv under OpenStack's upper-constraints.txt without moving a
# version that file pins (as in a kolla image or an openstack-ansible venv beside neutron).
# Usage: bash scripts/check_release.sh UPPER_CONSTRAINTS_TXT [OUTDIR]
#   UPPER_CONSTRAINTS_TXT: openstack/requirements' upper-constraints.txt (a path or a URL).
set -euo pipefail
cd "$(dirname "$0")/.."
uc=${1:?usage: check_release.sh UPPER_CONSTRAINTS_TXT [OUTDIR]}
out=$(realpath -m "${2:-dist}")
work=$(mktemp -d /var/tmp/ovnmeta-release.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
case "$uc" in http*) curl -fsSL "$uc" -o "$work/uc.txt"; uc="$work/uc.txt";; esac

python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q --disable-pip-version-check build twine
"$work/tools/bin/python" -m build --outdir "$out" . >"$work/build.log" 2>&1 || {
    tail -30 "$work/build.log"; exit 1; }
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' ovnmeta/__init__.py)
sdist="$out/ovnmeta-$version.tar.gz"; wheel="$out/ovnmeta-$version-py3-none-any.whl"
"$work/tools/bin/twine" check --strict "$sdist" "$wheel"
ls -l "$sdist" "$wheel" | awk '{print "built:", $5, "bytes", $9}'

python3 -m venv "$work/uc"
"$work/uc/bin/pip" install -q --disable-pip-version-check -c "$uc" "$wheel"
"$work/uc/bin/ovnmeta-agent" --version
# Every installed distribution that upper-constraints pins must be at its pinned version.
"$work/uc/bin/python" - "$uc" <<'PY'
import importlib.metadata as md, re, sys
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pins = {}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if "===" in line:
        name, rest = line.split("===", 1)
        pins.setdefault(canon(name), set()).add(rest.split(";")[0].strip())
moved, held = [], []
for dist in md.distributions():
    name = canon(dist.metadata["Name"])
    if name in pins:
        (held if dist.version in pins[name] else moved).append(f"{name}=={dist.version}")
for name in ("ovsdbapp", "ovs", "pyroute2", "jinja2", "oslo-config", "oslo-log",
             "prometheus-client", "httptools", "uvloop"):
    v = md.version(name)
    print(f"  {name} {v}" + ("  (pinned by upper-constraints)" if name in pins else
                              "  (not in upper-constraints)"))
print(f"upper-constraints: {len(held)} installed distributions at their pinned versions, "
      f"{len(moved)} moved{': ' + ', '.join(moved) if moved else ''}")
sys.exit(1 if moved else 0)
PY
