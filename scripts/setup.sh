#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs driftgauge with the given extras.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh parquet,fast,test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-parquet,fast}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "driftgauge needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2
  exit 1
fi
# Also when .venv has no pip: Debian's venv without python3-venv leaves a python and no pip,
# and running venv again, once python3-venv is installed, adds it.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
