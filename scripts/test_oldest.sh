#!/usr/bin/env bash
# The test suite at the oldest end of pyproject.toml's ranges: Debian 12's python3-* packages,
# in a venv made with --system-site-packages (.venv-oldest), ovnmeta installed without its
# dependencies so that nothing from PyPI replaces them. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >/dev/null   # OVN, haproxy and the rest, as for the newest end
PKGS=(python3-ovsdbapp python3-openvswitch python3-pyroute2 python3-jinja2 python3-oslo.config
      python3-oslo.log python3-httptools python3-uvloop python3-prometheus-client
      python3-pytest python3-hypothesis python3-aiohttp python3-yaml python3-build
      python3-setuptools python3-wheel python3-venv)
. scripts/apt_need.sh
apt_need "${PKGS[@]}"
if [ ! -x .venv-oldest/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv-oldest
fi
.venv-oldest/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    -e . -e tests/support 2>&1 | grep -v '^WARNING: Location' || true
# Every dependency must come from Debian: fail if pip put one of them in the venv.
.venv-oldest/bin/python - <<'PY'
import importlib.metadata as md, sys
from pathlib import Path
venv = Path(sys.prefix).resolve()
for dist in ["ovsdbapp", "ovs", "pyroute2", "jinja2", "oslo.config", "oslo.log", "httptools",
             "uvloop", "prometheus_client"]:
    d = md.distribution(dist)
    where = Path(d.locate_file("")).resolve()
    if venv in where.parents or where == venv:
        sys.exit(f"test_oldest: {dist} {d.version} is in the venv, not Debian's")
    print(f"  {dist} {d.version}  ({where})")
PY
exec .venv-oldest/bin/python -m pytest -q -p no:cacheprovider "$@"
