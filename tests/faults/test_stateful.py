"""Stateful tables under any delivery: merge pipelines keep, per key, the latest change; CDC
deletes stay deleted; objects that empty or vanish take their rows with them.

Every check compares the destination row by row with the model (tests/faults/stateful_model):
every change applied once, in sequence order. Randomness is seeded and the seed is in the
test id, so a failure replays exactly.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.run.catalog import Catalog
from app.run.request import ObjectRef
from app.run.runner import RunRequest, run
from core.settings import Settings
from tests.emulators import BigQueryEmulator
from tests.faults.stateful_model import (
    Change,
    ChangeFile,
    change_files,
    deliveries,
    expected_table,
)
from tests.helpers import REPO, duckdb_settings, query, write_catalog

CDC_PIPELINE = """
pipelines:
  - name: cdc
    source: {{uri: "changes/*.csv", columns: {{id: int64, seq: int64}}}}
    destination:
      table: accounts
      write_disposition: merge
      primary_key: [id]
      sequence: seq
      cdc: {{operation_column: op, delete_values: [d], deletes: {deletes}}}
"""


class Feed:
    """Change files on local disk, each with its own generation (mtime), and their runs."""

    def __init__(self, tmp_path: Path, settings: Settings, catalog: Catalog) -> None:
        self.folder = tmp_path / "changes"
        self.folder.mkdir(exist_ok=True)
        self.settings = settings
        self.catalog = catalog
        self.generation = 1_700_000_000_000_000_000

    def write(self, source: ChangeFile) -> Path:
        path = self.folder / source.name
        path.write_text(source.csv(), encoding="utf-8")
        self.generation += 1_000_000_000
        os.utime(path, ns=(self.generation, self.generation))
        return path

    def deliver(self, batch: list[ChangeFile], pipeline: str = "cdc") -> Any:
        """One run over exactly these objects (drain mode's request), duplicates included."""
        refs = tuple(ObjectRef(str(self.folder / f.name)) for f in batch)
        return run(RunRequest(pipeline, objects=refs), self.settings, self.catalog)


def cdc_feed(tmp_path: Path, deletes: str = "hard") -> Feed:
    catalog = write_catalog(tmp_path, CDC_PIPELINE.format(deletes=deletes))
    return Feed(tmp_path, duckdb_settings(tmp_path), catalog)


def live_rows(settings: Settings, table: str = "accounts") -> dict[int, tuple[int, str]]:
    deleted = _has_column(settings, table, "_ferry_deleted_at")
    where = " where _ferry_deleted_at is null" if deleted else ""
    rows = query(settings, f"select id, seq, v from ferry.{table}{where}")
    found = {int(i): (int(s), str(v)) for i, s, v in rows}
    assert len(found) == len(rows), "one row per key"
    return found


def _has_column(settings: Settings, table: str, column: str) -> bool:
    rows = query(
        settings,
        "select count(*) from information_schema.columns "
        f"where table_schema = 'ferry' and table_name = '{table}' and column_name = '{column}'",
    )
    return bool(rows[0][0])


# --- CDC feeds: random orders, duplicates, one run or many -----------------------------------


@pytest.mark.parametrize("runs", [1, 4, 12], ids=lambda n: f"{n}-runs")
@pytest.mark.parametrize("seed", [11, 23, 37])
def test_cdc_feed_in_any_order_ends_as_applied_in_sequence(
    tmp_path: Path, seed: int, runs: int
) -> None:
    rng = random.Random(seed)
    files = change_files(rng, files=8, keys=40, per_file=30)
    feed = cdc_feed(tmp_path)
    for source in files:
        feed.write(source)

    for batch in deliveries(rng, files, duplicates=0.4, runs=runs):
        feed.deliver(batch)

    assert live_rows(feed.settings) == expected_table(files), f"seed {seed}"


@pytest.mark.parametrize("seed", [5, 8])
def test_soft_deletes_keep_the_row_marked_and_still_block_older_changes(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    files = change_files(rng, files=6, keys=25, per_file=25)
    feed = cdc_feed(tmp_path, deletes="soft")
    for source in files:
        feed.write(source)

    for batch in deliveries(rng, files, duplicates=0.3, runs=6):
        feed.deliver(batch)

    assert live_rows(feed.settings) == expected_table(files), f"seed {seed}"
    everything = {int(i) for (i,) in query(feed.settings, "select id from ferry.accounts")}
    touched = {c.id for f in files for c in f.changes}
    assert everything == touched, "a soft-deleted key keeps its row"


def test_a_late_older_upsert_does_not_resurrect_a_hard_deleted_key(tmp_path: Path) -> None:
    feed = cdc_feed(tmp_path)

    upsert = ChangeFile("a.csv", (Change(1, 5, "u", "old"), Change(2, 6, "i", "kept")))
    delete = ChangeFile("b.csv", (Change(1, 9, "d", "gone"),))
    feed.write(upsert)
    feed.write(delete)

    feed.deliver([delete])
    feed.deliver([upsert])

    assert live_rows(feed.settings) == {2: (6, "kept")}
    tombstones = query(feed.settings, "select id, seq from ferry.accounts__tombstones")
    assert tombstones == [(1, 9)]


# --- file A / file B: redelivery and reordering on a plain merge pipeline --------------------

DIMENSION_PIPELINE = """
pipelines:
  - name: dim
    source: {uri: "dims/*.csv", columns: {id: int64}}
    destination: {table: dim, write_disposition: merge, primary_key: [id]}
"""


def dimension(tmp_path: Path) -> tuple[Settings, Catalog, Path]:
    catalog = write_catalog(tmp_path, DIMENSION_PIPELINE)
    folder = tmp_path / "dims"
    folder.mkdir()
    return duckdb_settings(tmp_path), catalog, folder


def write_dimension(folder: Path, name: str, ids: range, tag: str, generation: int) -> str:
    path = folder / name
    path.write_text("id,v\n" + "".join(f"{i},{tag}-{i}\n" for i in ids), encoding="utf-8")
    os.utime(path, ns=(generation, generation))
    return str(path)


def values(settings: Settings) -> dict[int, str]:
    return {int(i): str(v) for i, v in query(settings, "select id, v from ferry.dim")}


def test_redelivered_older_file_does_not_roll_the_table_back(tmp_path: Path) -> None:
    settings, catalog, folder = dimension(tmp_path)
    a = write_dimension(folder, "a.csv", range(1, 101), "A", 1_000_000_000)
    b = write_dimension(folder, "b.csv", range(1, 151), "B", 2_000_000_000)
    run(RunRequest("dim", source_uri=a), settings, catalog)
    run(RunRequest("dim", source_uri=b), settings, catalog)

    again = run(RunRequest("dim", source_uri=a, trigger="pubsub"), settings, catalog)

    assert again.status == "skipped"
    assert again.files[0].status == "already_loaded", "the ledger remembers A"
    assert values(settings) == {i: f"B-{i}" for i in range(1, 151)}


def test_out_of_order_files_leave_the_latest_upload(tmp_path: Path) -> None:
    settings, catalog, folder = dimension(tmp_path)
    a = write_dimension(folder, "a.csv", range(1, 101), "A", 1_000_000_000)
    b = write_dimension(folder, "b.csv", range(1, 151), "B", 2_000_000_000)

    run(RunRequest("dim", source_uri=b), settings, catalog)
    late = run(RunRequest("dim", source_uri=a), settings, catalog)

    assert late.files[0].status == "loaded"
    assert values(settings) == {i: f"B-{i}" for i in range(1, 151)}


def test_a_lost_ledger_still_cannot_roll_the_table_back(tmp_path: Path) -> None:
    """Even when A's ledger entry is gone, its rows are older than B's and change nothing."""
    settings, catalog, folder = dimension(tmp_path)
    a = write_dimension(folder, "a.csv", range(1, 101), "A", 1_000_000_000)
    b = write_dimension(folder, "b.csv", range(1, 151), "B", 2_000_000_000)
    run(RunRequest("dim", source_uri=a), settings, catalog)
    run(RunRequest("dim", source_uri=b), settings, catalog)
    _execute(settings, "delete from ferry._ferry_objects")

    again = run(RunRequest("dim", source_uri=a), settings, catalog)

    assert again.files[0].status == "loaded"
    assert values(settings) == {i: f"B-{i}" for i in range(1, 151)}


def test_a_deployment_without_the_ledger_reads_it_from_the_lineage_rows(tmp_path: Path) -> None:
    settings, catalog, folder = dimension(tmp_path)
    a = write_dimension(folder, "a.csv", range(1, 11), "A", 1_000_000_000)
    run(RunRequest("dim", source_uri=a), settings, catalog)
    _execute(settings, "drop table ferry._ferry_objects")  # as before the ledger existed

    again = run(RunRequest("dim", source_uri=a), settings, catalog)

    assert again.files[0].status == "already_loaded"
    assert values(settings) == {i: f"A-{i}" for i in range(1, 11)}


def test_a_newer_generation_of_the_same_object_replaces_what_it_still_owns(
    tmp_path: Path,
) -> None:
    settings, catalog, folder = dimension(tmp_path)
    write_dimension(folder, "a.csv", range(1, 11), "A1", 1_000_000_000)
    b = write_dimension(folder, "b.csv", range(5, 7), "B", 2_000_000_000)
    run(RunRequest("dim"), settings, catalog)
    a = write_dimension(folder, "a.csv", range(1, 4), "A2", 3_000_000_000)

    run(RunRequest("dim", source_uri=a), settings, catalog)

    # keys 4..10 left the object; 5 and 6 had moved on to B, which still holds them
    assert values(settings) == {1: "A2-1", 2: "A2-2", 3: "A2-3", 5: "B-5", 6: "B-6"}
    assert b


def _execute(settings: Settings, sql: str) -> None:
    import duckdb

    with duckdb.connect(str(settings.resolved_duckdb_path)) as connection:
        connection.execute(sql)


# --- objects that empty or vanish ------------------------------------------------------------


@pytest.mark.parametrize("disposition", ["append", "merge"])
def test_an_emptied_object_removes_the_rows_of_its_older_generation(
    tmp_path: Path, disposition: str
) -> None:
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: dim
            source: {{uri: "dims/*.csv", columns: {{id: int64}}}}
            transform: [{{filter: "v != 'skip'"}}]
            destination: {{table: dim, write_disposition: {disposition}, primary_key: [id]}}
        """,
    )
    settings = duckdb_settings(tmp_path)
    folder = tmp_path / "dims"
    folder.mkdir()
    a = write_dimension(folder, "a.csv", range(1, 6), "A", 1_000_000_000)
    write_dimension(folder, "b.csv", range(10, 12), "B", 1_500_000_000)
    run(RunRequest("dim"), settings, catalog)

    Path(a).write_text("id,v\n1,skip\n", encoding="utf-8")  # everything filtered out
    os.utime(a, ns=(2_000_000_000, 2_000_000_000))
    emptied = run(RunRequest("dim", source_uri=a), settings, catalog)
    again = run(RunRequest("dim", source_uri=a), settings, catalog)

    assert emptied.files[0].status == "loaded"
    assert emptied.files[0].rows_loaded == 0
    assert again.files[0].status == "already_loaded"
    assert values(settings) == {10: "B-10", 11: "B-11"}
    ledger = query(
        settings, f"select status, row_count from ferry._ferry_objects where uri = '{a}'"
    )
    assert sorted(ledger) == [("emptied", 0), ("loaded", 5)]


def test_a_deleted_object_removes_its_rows_once(tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: dim
            source: {uri: "dims/*.csv", columns: {id: int64}, on_object_delete: delete_rows}
            destination: {table: dim}
        """,
    )
    settings = duckdb_settings(tmp_path)
    folder = tmp_path / "dims"
    folder.mkdir()
    a = write_dimension(folder, "a.csv", range(1, 4), "A", 1_000_000_000)
    write_dimension(folder, "b.csv", range(10, 12), "B", 1_500_000_000)
    run(RunRequest("dim"), settings, catalog)
    Path(a).unlink()

    gone = RunRequest("dim", source_uri=a, generation=1_000_000_000, object_deleted=True)
    first = run(gone, settings, catalog)
    second = run(RunRequest(**{**gone.__dict__, "run_id": "again"}), settings, catalog)

    assert first.files[0].status == "deleted"
    assert second.files[0].status == "already_deleted"
    assert values(settings) == {10: "B-10", 11: "B-11"}


def test_a_crash_after_the_commit_is_repaired_by_the_redelivery(tmp_path: Path) -> None:
    """Killed between the commit (ledger: emptied) and the removal of the older rows: the
    redelivery finds the object done and finishes the removal."""
    settings, catalog, folder = dimension(tmp_path)
    a = write_dimension(folder, "a.csv", range(1, 6), "A", 1_000_000_000)
    run(RunRequest("dim", source_uri=a), settings, catalog)
    Path(a).write_text("id,v\n", encoding="utf-8")
    os.utime(a, ns=(2_000_000_000, 2_000_000_000))

    killed = cli_run(tmp_path, settings, ["dim", "--source", a], failpoints="after_commit")
    assert killed.returncode == -9
    assert len(values(settings)) == 5, "the commit landed, the removal did not"
    again = run(RunRequest("dim", source_uri=a), settings, catalog)

    assert again.files[0].status == "already_loaded"
    assert values(settings) == {}


def cli_run(
    tmp_path: Path, settings: Settings, args: list[str], *, failpoints: str = ""
) -> subprocess.CompletedProcess[str]:
    """`main.py run` in its own process, on the destination `settings` name."""
    env = {
        **os.environ,
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(settings.data_dir),
        "FERRY_FAILPOINTS": failpoints,
        "FERRY_LOG_FORMAT": "json",
    }
    if settings.destination_kind == "bigquery":
        assert settings.bigquery_project and settings.bigquery_emulator_host
        env |= {
            "FERRY_DESTINATION": "bigquery",
            "FERRY_BIGQUERY_PROJECT": settings.bigquery_project,
            "FERRY_BIGQUERY_DATASET": settings.dataset_name,
            "BIGQUERY_EMULATOR_HOST": settings.bigquery_emulator_host,
        }
    else:
        env |= {
            "FERRY_DESTINATION": "duckdb",
            "FERRY_DUCKDB_PATH": str(settings.resolved_duckdb_path),
        }
        env.pop("FERRY_BIGQUERY_PROJECT", None)
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# --- SIGKILL mid-load ------------------------------------------------------------------------


def deliver_with_kills(
    rng: random.Random, feed: Feed, files: list[ChangeFile], tmp_path: Path, delays: list[str]
) -> int:
    """Deliver in random runs; before some, a CLI run of the same objects is SIGKILLed a
    random delay into its load. Returns how many runs died."""
    killed = 0
    for batch in deliveries(rng, files, duplicates=0.3, runs=4):
        if killed < 3 and rng.random() < 0.7:
            delay = rng.choice(delays)
            for uri in sorted({str(feed.folder / f.name) for f in batch}):
                result = cli_run(
                    tmp_path,
                    feed.settings,
                    ["cdc", "--source", uri],
                    failpoints=f"during_load:{delay}",
                )
                killed += result.returncode == -9
        feed.deliver(batch)  # the redelivery (or the first delivery)
    return killed


@pytest.mark.parametrize("seed", [3])
def test_cdc_feed_with_kills_mid_load_ends_as_applied_in_sequence(
    tmp_path: Path, seed: int
) -> None:
    """Some runs are SIGKILLed during the load (a random delay into it); each is redelivered.
    dlt commits table by table, so a kill can leave the data or the ledger or the tombstones
    committed without the others: the ledger counts none of it, and the redelivery's merge
    must still end in the model's table."""
    rng = random.Random(seed)
    files = change_files(rng, files=6, keys=30, per_file=40)
    feed = cdc_feed(tmp_path)
    for source in files:
        feed.write(source)

    killed = deliver_with_kills(rng, feed, files, tmp_path, ["0", "0.02", "0.05", "0.1", "0.2"])

    assert killed, "at least one run died mid-load"
    assert live_rows(feed.settings) == expected_table(files), f"seed {seed}"


# --- partition columns -----------------------------------------------------------------------


def test_hive_partition_segments_become_typed_columns(tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: events
            source:
              uri: "lake/**/*.csv"
              partition_columns: {dt: date, region: string, hour: int64}
            destination: {table: events}
        """,
    )
    settings = duckdb_settings(tmp_path)
    for dt, region, hour in [("2026-11-20", "eu", 7), ("2026-11-21", "us", 23)]:
        folder = tmp_path / "lake" / f"dt={dt}" / f"region={region}" / f"hour={hour}"
        folder.mkdir(parents=True)
        (folder / "part-0.csv").write_text("n\n1\n2\n", encoding="utf-8")

    run(RunRequest("events"), settings, catalog)

    rows = query(
        settings,
        "select cast(dt as varchar), region, hour, count(*) from ferry.events "
        "group by all order by 1",
    )
    assert rows == [("2026-11-20", "eu", 7, 2), ("2026-11-21", "us", 23, 2)]
    types = dict(
        query(
            settings,
            "select column_name, data_type from information_schema.columns "
            "where table_name = 'events' and column_name in ('dt', 'hour')",
        )
    )
    assert types == {"dt": "DATE", "hour": "BIGINT"}


# --- the same on BigQuery (the emulator): few cases, they are slow ----------------------------


def bigquery_feed(tmp_path: Path, bigquery: BigQueryEmulator, dataset: str) -> Feed:
    settings = Settings(
        destination="bigquery",
        bigquery_project=bigquery.project,
        bigquery_dataset=dataset,
        bigquery_emulator_host=bigquery.endpoint,
        storage_emulator_host=None,
        data_dir=tmp_path / "data",
    )
    return Feed(tmp_path, settings, write_catalog(tmp_path, CDC_PIPELINE.format(deletes="hard")))


def bigquery_rows(bigquery: BigQueryEmulator, dataset: str) -> dict[int, tuple[int, str]]:
    table = f"`{bigquery.project}.{dataset}.accounts`"
    rows = list(bigquery.client().query(f"select id, seq, v from {table}").result())
    found = {int(r.id): (int(r.seq), str(r.v)) for r in rows}
    assert len(found) == len(rows), "one row per key"
    return found


@pytest.mark.parametrize("seed", [19])
def test_cdc_feed_on_bigquery_ends_as_applied_in_sequence(
    tmp_path: Path,
    bigquery_env: BigQueryEmulator,
    unique_name: str,
    seed: int,
) -> None:
    rng = random.Random(seed)
    files = change_files(rng, files=5, keys=20, per_file=20)
    feed = bigquery_feed(tmp_path, bigquery_env, unique_name)
    for source in files:
        feed.write(source)

    for batch in deliveries(rng, files, duplicates=0.4, runs=4):
        feed.deliver(batch)

    assert bigquery_rows(bigquery_env, unique_name) == expected_table(files), f"seed {seed}"


@pytest.mark.parametrize("seed", [29])
def test_cdc_feed_on_bigquery_with_kills_mid_load_ends_as_applied_in_sequence(
    tmp_path: Path,
    bigquery_env: BigQueryEmulator,
    unique_name: str,
    seed: int,
) -> None:
    rng = random.Random(seed)
    files = change_files(rng, files=4, keys=20, per_file=25)
    feed = bigquery_feed(tmp_path, bigquery_env, unique_name)
    for source in files:
        feed.write(source)

    killed = deliver_with_kills(rng, feed, files, tmp_path, ["0.3", "0.8", "1.5"])

    assert killed, "at least one run died mid-load"
    assert bigquery_rows(bigquery_env, unique_name) == expected_table(files), f"seed {seed}"


def test_a_cdc_file_without_deletes_lands_on_bigquery(
    tmp_path: Path, bigquery_env: BigQueryEmulator, unique_name: str
) -> None:
    """Upserts only: no tombstone to write, and still every live row lands."""
    only_upserts = ChangeFile(
        "changes-00.csv",
        (Change(1, 1, "i", "v1"), Change(2, 2, "i", "v2"), Change(1, 3, "u", "v3")),
    )
    feed = bigquery_feed(tmp_path, bigquery_env, unique_name)
    feed.write(only_upserts)

    report = feed.deliver([only_upserts])

    assert report.status == "succeeded"
    assert bigquery_rows(bigquery_env, unique_name) == expected_table([only_upserts])
