#!/usr/bin/env bash
# The main job on a fresh machine: install driftgauge into .venv and run `driftgauge demo`.
# Extra arguments go to the demo, e.g. scripts/demo.sh --duration 0
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh parquet,fast
exec .venv/bin/driftgauge demo "$@"
