#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs Prometheus, promtool and
# Alertmanager (Debian packages) when missing, driftgauge with its test extras
# into .venv, then runs ruff, mypy and pytest. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
fi
scripts/setup.sh parquet,fast,test,mlserver,spark,dask
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
# Property tests draw the same examples on every run here (tests/conftest.py).
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
# Two workers (a test file each at a time, so its module fixtures start once), then the tests
# marked serial, which measure timing or load, alone. Exit 5 is pytest's "none selected".
run() { .venv/bin/pytest "$@" || { code=$?; [ "$code" = 5 ] || exit "$code"; }; }
run -n 2 --dist loadfile -m "not serial" "$@"
run -m serial "$@"
