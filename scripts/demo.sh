#!/usr/bin/env bash
# Set up the runtime environment and run the demo pipeline on the embedded default (DuckDB).
# Installs the requirements and the `ferry` command into .venv (.venv/bin/ferry).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
want="$PWD $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -x .venv/bin/ferry || "$(cat .venv/.ferry-command 2>/dev/null)" != "$want" ]]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" >.venv/.ferry-command
fi
.venv/bin/ferry run "${1:-orders}"
