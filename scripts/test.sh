#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks the layers (import-linter) and the
# types (mypy), then runs unit and sandbox tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/lint-imports --no-cache >/dev/null || { .venv/bin/lint-imports --no-cache; exit 1; }
# The type checker: strict on the core and the boundaries; adapters and fakes implement them.
.venv/bin/mypy --cache-dir=/dev/null >/dev/null || { .venv/bin/mypy --cache-dir=/dev/null; exit 1; }
exec .venv/bin/python -m pytest -q "$@"
