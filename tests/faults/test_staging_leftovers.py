"""Staging leftovers (issue 14): a run SIGKILLed after its load commits never drops its
`<dataset>_staging_<run id>` dataset (on BigQuery a copy of the source rows). The next run
sweeps staging datasets older than FERRY_STAGING_MAX_AGE_HOURS, never a recent one, and
`main.py gc` does the same on demand; the rows stay exact throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from google.cloud import bigquery

from app.destinations.staging import stale_kept_staging, stale_staging
from app.run.request import new_run_id
from tests.emulators import BigQueryEmulator
from tests.helpers import REPO

ROWS = 500
OLD = "20200101t000000_0123abcd"
"""A run id from long ago: a run-log write killed years back."""


def future_token() -> str:
    """A run that started after the sweep's clock: it stands for a live run."""
    return (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y%m%dt%H%M%S") + "_89abcdef"


def ferry(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "CLOUD_RUN_", "BIGQUERY_", "STORAGE_"))
    }
    environment |= {
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_LOG_FORMAT": "json",
        **env,
    }
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def write_pipeline(tmp_path: Path) -> None:
    """A merge pipeline: dlt merges through the run's staging dataset."""
    lines = "".join(f"{i},name-{i}\n" for i in range(ROWS))
    (tmp_path / "people.csv").write_text("id,name\n" + lines, encoding="utf-8")
    (tmp_path / "pipelines.yaml").write_text(
        """
pipelines:
  - name: people
    source: {uri: "people.csv", columns: {id: int64}}
    destination: {table: people, write_disposition: merge, primary_key: [id]}
""",
        encoding="utf-8",
    )


def killed_after_commit(tmp_path: Path, env: dict[str, str]) -> None:
    killed = ferry(tmp_path, {**env, "FERRY_FAILPOINTS": "after_commit"}, "run", "people")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


def rerun(tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    # the killed run's leftover is a second old once this age has passed
    time.sleep(1.5)
    done = ferry(tmp_path, {**env, "FERRY_STAGING_MAX_AGE_HOURS": "0.0003"}, "run", "people")
    assert done.returncode == 0, done.stderr[-3000:]
    swept = [
        json.loads(line)
        for line in done.stderr.splitlines()
        if line.startswith("{") and '"staging_swept"' in line
    ]
    assert len(swept) == 1, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout)
    return report


# --- the rule (pure) ----------------------------------------------------------------------------


def test_only_old_run_staging_datasets_of_this_dataset_are_stale() -> None:
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    names = [
        "ferry_staging_20261129t115959_0123abcd",  # a day and a second old
        "ferry_staging_runlog_20261101t000000_0123abcd",  # a run-log write
        "ferry_staging_idempotency_20261101t000000_0123abcd",
        "ferry_staging_20261130t110000_0123abcd",  # an hour old: maybe live
        "ferry_staging_20261130t130000_0123abcd",  # from the future: live
        "ferry_staging",  # dlt's shared default: not ours to drop
        "ferry",
        "other_staging_20200101t000000_0123abcd",  # another dataset's
        "ferry_staging_notarunid",
    ]
    assert stale_staging(names, "ferry", now, timedelta(hours=24)) == [
        "ferry_staging_20261129t115959_0123abcd",
        "ferry_staging_idempotency_20261101t000000_0123abcd",
        "ferry_staging_runlog_20261101t000000_0123abcd",
    ]


# --- DuckDB -------------------------------------------------------------------------------------


def schemas(database: Path) -> list[str]:
    with duckdb.connect(str(database), read_only=True) as connection:
        rows = connection.execute(
            "select schema_name from information_schema.schemata "
            "where catalog_name = current_database() order by 1"
        ).fetchall()
    return [str(row[0]) for row in rows]


def test_duckdb_leftovers_of_a_killed_run_are_swept_by_the_next_run_and_gc(
    tmp_path: Path,
) -> None:
    write_pipeline(tmp_path)
    database = tmp_path / "destination.duckdb"
    env = {"FERRY_DUCKDB_PATH": str(database), "FERRY_DESTINATION": "duckdb"}

    killed_after_commit(tmp_path, env)
    leftovers = [name for name in schemas(database) if name.startswith("ferry_staging_")]
    assert len(leftovers) == 1, schemas(database)
    live = f"ferry_staging_{future_token()}"
    with duckdb.connect(str(database)) as connection:
        for name in (f"ferry_staging_runlog_{OLD}", live):
            connection.execute(f'create schema "{name}"')
            connection.execute(f'create table "{name}".people as select 1 as id')

    report = rerun(tmp_path, env)

    assert [name for name in schemas(database) if "_staging_" in name] == [live]
    # the rows: the killed run had committed, so the rerun loads nothing again
    assert report["rows_loaded"] == 0
    with duckdb.connect(str(database), read_only=True) as connection:
        tally = connection.execute(
            "select count(*), count(distinct id) from ferry.people"
        ).fetchone()
    assert tally == (ROWS, ROWS)

    # gc: the same rule, on demand
    with duckdb.connect(str(database)) as connection:
        connection.execute(f'create schema "ferry_staging_{OLD}"')
    done = ferry(tmp_path, env, "gc")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"dropped_staging_datasets": [f"ferry_staging_{OLD}"]}
    assert [name for name in schemas(database) if "_staging_" in name] == [live]


def test_gc_in_a_far_time_zone_keeps_a_live_runs_staging(tmp_path: Path) -> None:
    """Run ids and the sweep are UTC: an instance fourteen hours ahead (TZ=Etc/GMT-14) sees
    a run that started a moment ago as a moment old, not as fourteen hours old."""
    write_pipeline(tmp_path)
    database = tmp_path / "destination.duckdb"
    env = {"FERRY_DUCKDB_PATH": str(database), "FERRY_DESTINATION": "duckdb"}
    assert ferry(tmp_path, env, "run", "people").returncode == 0
    live = "ferry_staging_" + new_run_id().lower().replace("-", "_")
    with duckdb.connect(str(database)) as connection:
        connection.execute(f'create schema "{live}"')

    done = ferry(tmp_path, {**env, "TZ": "Etc/GMT-14", "FERRY_STAGING_MAX_AGE_HOURS": "2"}, "gc")

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"dropped_staging_datasets": []}
    assert live in schemas(database)


# --- BigQuery (emulator) ----------------------------------------------------------------------


@pytest.mark.emulators
def test_bigquery_leftovers_of_a_killed_run_are_swept_by_the_next_run(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, unique_name: str
) -> None:
    write_pipeline(tmp_path)
    env = {
        "FERRY_BIGQUERY_PROJECT": bigquery_emulator.project,
        "FERRY_BIGQUERY_DATASET": unique_name,
        **bigquery_emulator.env,
    }
    client = bigquery_emulator.client()

    def staging() -> list[str]:
        return sorted(
            item.dataset_id
            for item in client.list_datasets()
            if item.dataset_id.startswith(f"{unique_name}_staging_")
        )

    killed_after_commit(tmp_path, env)
    leftovers = staging()
    assert len(leftovers) == 1, "the killed run left its staging dataset (with rows)"
    live = f"{unique_name}_staging_{future_token()}"
    for name in (f"{unique_name}_staging_runlog_{OLD}", live):
        client.create_dataset(bigquery.Dataset(f"{bigquery_emulator.project}.{name}"))

    report = rerun(tmp_path, env)

    assert staging() == [live]
    assert report["rows_loaded"] == 0
    rows = list(
        client.query(
            f"select count(*), count(distinct id) from `{bigquery_emulator.project}."
            f"{unique_name}.people`"
        ).result()
    )
    assert tuple(rows[0].values()) == (ROWS, ROWS)


def test_kept_staging_datasets_are_stale_by_their_tables_age_not_their_name() -> None:

    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    used = {
        "ferry_staging_k0123456789ab": now - timedelta(hours=30),  # given up long ago
        "ferry_staging_kaaaaaaaaaaaa": now - timedelta(minutes=5),  # a live instance's
        "ferry_staging_kbbbbbbbbbbbb": None,  # gone meanwhile
        "other_staging_k0123456789ab": now - timedelta(hours=30),  # another dataset's
        "ferry_staging_kshort": now - timedelta(hours=30),  # not a kept name
    }
    stale = stale_kept_staging(used, "ferry", used.__getitem__, now, timedelta(hours=24))
    assert stale == ["ferry_staging_k0123456789ab"]
