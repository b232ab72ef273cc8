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

# `.venv/bin/ferry`: this checkout installed in place (the docs call it), redone when the
# checkout moved or pyproject.toml changed.
install_ferry_command() {
  local want marker=.venv/.ferry-command
  want="$PWD $(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [[ -x .venv/bin/ferry && -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    return 0
  fi
  log "installing the ferry command into .venv (pip install -e .)"
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
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

# Everything the suite needs from the machine, named at once before anything starts.
check_prerequisites() {
  local missing=() jars java_major
  (pick_python >/dev/null 2>&1) || missing+=("Python 3.11+ (python3.11 or python3 on PATH; Debian: python3.11 python3.11-venv)")
  if [[ "$FAST" == 0 ]]; then
    if [[ -n "${PUBSUB_EMULATOR_JAR:-}" ]]; then
      jars=("$PUBSUB_EMULATOR_JAR")
    else
      # shellcheck disable=SC2206  # the glob is meant to expand here
      jars=($PUBSUB_JAR_GLOB)
    fi
    [[ -f "${jars[0]}" ]] || missing+=("the Pub/Sub emulator jar (apt package google-cloud-cli-pubsub-emulator; or set PUBSUB_EMULATOR_JAR to cloud-pubsub-emulator-*-all.jar)")
    java_major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1 || true)"
    [[ "${java_major:-0}" -ge 17 ]] 2>/dev/null || missing+=("Java 17+ for the Pub/Sub emulator (Debian: openjdk-17-jre-headless)${java_major:+; found Java $java_major}")
    # headless Chromium renders the run-history page (tests/e2e/test_history_page.py); as
    # root (CI) it is installed here, otherwise you install it
    if ! command -v chromium >/dev/null 2>&1; then
      if [[ "$(id -u)" == 0 ]]; then
        log "installing chromium (apt-get)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
          || missing+=("chromium (apt-get install chromium failed)")
      else
        missing+=("chromium, for tests/e2e/test_history_page.py (Debian: apt-get install chromium)")
      fi
    fi
  fi
  if (( ${#missing[@]} )); then
    printf 'ERROR: missing before the tests can start:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    [[ "$FAST" == 1 ]] || printf '  (bash scripts/test.sh --fast needs only Python)\n' >&2
    exit 1
  fi
  [[ "$FAST" == 1 ]] || log "Pub/Sub emulator: ${jars[0]}; Java $java_major; $(command -v chromium)"
}

FAST=0
if [[ "${1:-}" == "--fast" ]]; then
  FAST=1
  shift
fi

check_prerequisites
setup_app_venv
install_ferry_command
if [[ "$FAST" == 0 ]]; then
  setup_bigquery_emulator
fi

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
