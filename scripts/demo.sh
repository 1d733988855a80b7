#!/usr/bin/env bash
# The demo: a real OVN sandbox on this host. `demo.sh down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m ovnmeta_testing.demo "$@"
