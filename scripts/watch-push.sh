#!/usr/bin/env bash
# Watch a push locally: starts the Cloud Storage and Pub/Sub emulators and a `ferry serve`
# pointed at them, uploads a file, and shows the push envelope, the load and the run history.
# Needs what `bash scripts/test.sh` installs (.venv, Java 17 and the Pub/Sub emulator jar).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || { echo "ERROR: .venv not found: run bash scripts/test.sh first" >&2; exit 1; }
exec .venv/bin/python scripts/watch_push.py "$@"
