#!/usr/bin/env bash
# Bring a private OVN sandbox up or down: ovn-sandbox.sh up|down|status [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m ovnmeta_testing.sandbox "$@"
