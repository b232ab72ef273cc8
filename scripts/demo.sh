#!/usr/bin/env bash
# Set up the runtime environment and run the demo pipeline on the embedded default (DuckDB).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python main.py run "${1:-orders}"
