#!/usr/bin/env bash
# Installs what ovnmeta needs on Debian 12 (as root): OVN/OVS, haproxy, tools, and a
# virtualenv in .venv with the package. Cheap to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# podman, runc and debootstrap: the container image test; dpkg-dev to python3-installer: the
# Debian package test.
# nginx is the benchmarks' constant backend (scripts/bench_proxy.py); its own service is not used.
# mariadb-server: neutron-server's database in the sandbox tests (started by the test, privately).
PKGS=(openvswitch-switch mariadb-server ovn-central ovn-host haproxy iproute2 ethtool iptables iputils-ping curl wrk openssl procps prometheus systemd nginx
      podman runc debootstrap dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all
      python3-setuptools python3-wheel python3-build python3-installer fakeroot
      python3 python3-venv)
. scripts/apt_need.sh
apt_need "${PKGS[@]}"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.ovnmeta-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ tests/support/pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "install: python packages into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]' -e tests/support 2>&1 | grep -v '^WARNING: Location' || true
    .venv/bin/python -c 'import ovnmeta, ovnmeta_testing, ovsdbapp, pyroute2, aiohttp, httptools, uvloop'
    touch "$stamp"
fi

# neutron-server 29, for the tests that run it (tests/support/neutron-venv.txt): its own venv,
# so none of neutron's dependencies reach the product's.
nstamp=.venv-neutron/.ovnmeta-installed
if [ ! -f "$nstamp" ] || [ tests/support/neutron-venv.txt -nt "$nstamp" ]; then
    echo "install: neutron-server 29 into .venv-neutron (a few minutes, once)"
    [ -x .venv-neutron/bin/python ] || python3 -m venv .venv-neutron
    .venv-neutron/bin/pip install -q --disable-pip-version-check -r tests/support/neutron-venv.txt 2>&1 | grep -v '^WARNING: Location' || true
    .venv-neutron/bin/python -c 'import neutron.wsgi, pymysql' 2>/dev/null || { echo "install: neutron venv broken" >&2; exit 1; }
    touch "$nstamp"
fi
