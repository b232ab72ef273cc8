#!/usr/bin/env bash
# The one command for a fresh machine: build what the tests need, then lint, type-check and test.
# Usage: bash scripts/test.sh [--fast] [pytest args...]
#   --fast: lint, types, layer contracts and the tests that need no emulator (under 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

BQ_PACKAGES=(
  bqemulator==1.4.0
  duckdb==1.5.5
  duckdb-extension-spatial==1.5.5
  duckdb-extension-avro==1.5.5
  duckdb-extensions==1.5.5
  numpy==2.4.6
)
PUBSUB_JAR_GLOB=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

pick_python() {
  local candidate
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$candidate"
      return 0
    fi
  done
  die "Python >= 3.11 not found on PATH (tried python3.11, python3)."
}

# The markers hold what was installed, so a changed pin reinstalls and an unchanged one is skipped.
setup_app_venv() {
  local want marker=.venv/.ferry-installed
  want="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    log ".venv is up to date"
    return 0
  fi
  if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv"
    "$(pick_python)" -m venv .venv
  fi
  log "installing requirements-dev.txt into .venv"
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  echo "$want" >"$marker"
}

# bqemulator pins clash with the app's (duckdb, sqlglot), so it lives in its own venv.
setup_bigquery_emulator() {
  local want marker=.emulators/bq/.ferry-installed
  want="${BQ_PACKAGES[*]} +spatial +avro"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    log "BigQuery emulator is up to date (.emulators/bq)"
    return 0
  fi
  if [[ ! -x .emulators/bq/bin/python ]]; then
    log "creating .emulators/bq"
    mkdir -p .emulators
    "$(pick_python)" -m venv .emulators/bq
  fi
  log "installing the BigQuery emulator into .emulators/bq"
  .emulators/bq/bin/python -m pip install --quiet "${BQ_PACKAGES[@]}"
  # bqemulator loads DuckDB's spatial extension at start: install it from the wheel, offline.
  mkdir -p .emulators/home
  HOME="$PWD/.emulators/home" .emulators/bq/bin/python -c \
    "from duckdb_extensions import import_extension as i; i('spatial'); i('avro')"
  echo "$want" >"$marker"
}

check_pubsub_emulator() {
  local jars
  if [[ -n "${PUBSUB_EMULATOR_JAR:-}" ]]; then
    jars=("$PUBSUB_EMULATOR_JAR")
  else
    # shellcheck disable=SC2206  # the glob is meant to expand here
    jars=($PUBSUB_JAR_GLOB)
  fi
  [[ -f "${jars[0]}" ]] || die "Pub/Sub emulator jar not found: ${jars[0]}
  It ships with the Debian package google-cloud-cli-pubsub-emulator; install it, or set
  PUBSUB_EMULATOR_JAR to the path of cloud-pubsub-emulator-*-all.jar."
  command -v java >/dev/null 2>&1 || die "java not found on PATH: the Pub/Sub emulator needs Java 17+."
  java -version >/dev/null 2>&1 || die "'java -version' failed: the Pub/Sub emulator needs a working Java 17+."
  log "Pub/Sub emulator: ${jars[0]}"
}

FAST=0
if [[ "${1:-}" == "--fast" ]]; then
  FAST=1
  shift
fi

setup_app_venv
if [[ "$FAST" == 0 ]]; then
  setup_bigquery_emulator
  check_pubsub_emulator
fi
# headless Chromium renders the run-history page (tests/e2e/test_history_page.py); root (CI) installs it
[[ "$FAST" == 1 ]] || command -v chromium >/dev/null 2>&1 || { [[ "$(id -u)" == 0 ]] && log "installing chromium" && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || die "chromium not found: apt-get install -y chromium (needed by tests/e2e/test_history_page.py)"

log "ruff check ."
.venv/bin/ruff check .
log "mypy ."
.venv/bin/mypy .
log "hadolint Dockerfile"
.venv/bin/hadolint Dockerfile
log "lint-imports (layer contracts, pyproject.toml)"
.venv/bin/lint-imports --no-cache
if [[ "$FAST" == 1 ]]; then
  log "pytest -m 'not emulators and not slow' $*"
  exec .venv/bin/pytest -n 2 -m "not emulators and not slow" "$@"
fi
# two workers: emulator-bound tests wait on I/O more than on the CPU, even on a busy machine
log "pytest -n 2 $*"
exec .venv/bin/pytest -n 2 "$@"
