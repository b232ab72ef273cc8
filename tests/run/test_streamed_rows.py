"""A big DuckDB run of new objects appends its rows while it reads (streamed_rows.py and
duckdb/streamed_append.py): the table must be exactly the one dlt's load step gives, and a
run that fails anywhere before the commit must leave nothing behind."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from app.run.catalog import Catalog
from app.run.runner import RunRequest, run
from core import failpoints
from core.errors import BadDataError, FerryError
from core.settings import Settings
from tests.helpers import count, duckdb_settings, query, write_catalog

PIPELINE = """
pipelines:
  - name: events
    source:
      uri: data/*.csv
      columns: {id: int64, amount: float64, at: timestamp}
    transform:
      - rename: {kind: event_kind}
      - filter: "amount >= 1"
      - derive: {double_amount: "amount * 2"}
    destination:
      table: events
      write_disposition: append
"""

ROWS_PER_FILE = 3_000


def write_events(folder: Path, name: str, first_id: int, *, extra: bool = False) -> Path:
    """A file of events; `extra` adds a column the other files lack."""
    header = "id,kind,amount,at" + (",note" if extra else "") + "\n"
    lines = []
    for i in range(first_id, first_id + ROWS_PER_FILE):
        note = f",note {i}" if extra else ""
        at = f"2026-0{1 + i % 9}-1{i % 10}T10:{i % 60:02d}:00.{i % 1000:03d}+02:00"
        lines.append(f'{i},"kind {i % 5}, ok",{i % 7 + 0.5},{at}{note}\n')
    path = folder / name
    path.write_text(header + "".join(lines), encoding="utf-8")
    return path


def setup(tmp_path: Path, **overrides: Any) -> tuple[Settings, Catalog]:
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    catalog = write_catalog(tmp_path, PIPELINE)
    return duckdb_settings(tmp_path, **overrides), catalog


def streamed(tmp_path: Path) -> tuple[Settings, Catalog]:
    """Every run of new objects streams (the threshold is for big runs in production)."""
    return setup(tmp_path, streamed_append_bytes=0)


def table_rows(settings: Settings) -> list[tuple[Any, ...]]:
    """Every row, values and lineage, in key order (load ids differ between destinations)."""
    return query(
        settings,
        'select id, event_kind, amount, "at", double_amount, note, _ferry_source_uri '
        "from ferry.events order by id",
    )


def columns_sql(settings: Settings) -> str:
    return (
        "select column_name, data_type, is_nullable from information_schema.columns "
        "where table_schema = 'ferry' and table_name = 'events' order by column_name"
    )


def loaded_ids_are_committed(settings: Settings) -> bool:
    """Every row's load id is a completed dlt load (the ledger counts only those)."""
    if not query(
        settings, "select 1 from information_schema.tables where table_name = '_dlt_loads'"
    ):
        return count(settings, "events") == 0
    orphans = query(
        settings,
        "select count(*) from ferry.events where _dlt_load_id not in "
        "(select load_id from ferry._dlt_loads where status = 0)",
    )
    return bool(orphans[0][0] == 0)


def test_streamed_run_lands_the_table_dlts_load_lands(tmp_path: Path) -> None:
    plain_settings, plain_catalog = setup(tmp_path / "plain")
    stream_settings, stream_catalog = streamed(tmp_path / "streamed")
    for folder in (tmp_path / "plain" / "data", tmp_path / "streamed" / "data"):
        write_events(folder, "a.csv", 0)
        write_events(folder, "b.csv", ROWS_PER_FILE)
        write_events(folder, "c.csv", 2 * ROWS_PER_FILE, extra=True)  # goes through dlt
    plain = run(RunRequest(pipeline="events"), plain_settings, plain_catalog)
    stream = run(RunRequest(pipeline="events"), stream_settings, stream_catalog)

    assert stream.status == plain.status == "succeeded"
    assert stream.rows_loaded == plain.rows_loaded == count(stream_settings, "events")
    assert stream.tables == plain.tables
    assert query(stream_settings, columns_sql(stream_settings)) == query(
        plain_settings, columns_sql(plain_settings)
    )
    streamed_rows, plain_rows = table_rows(stream_settings), table_rows(plain_settings)
    assert len(streamed_rows) == len({row[0] for row in streamed_rows}) > 2 * ROWS_PER_FILE
    assert [row[:-1] for row in streamed_rows] == [row[:-1] for row in plain_rows]
    assert [Path(row[-1]).name for row in streamed_rows] == [
        Path(row[-1]).name for row in plain_rows
    ]
    assert loaded_ids_are_committed(stream_settings)
    # the next run finds every object loaded: nothing is read twice
    again = run(RunRequest(pipeline="events"), stream_settings, stream_catalog)
    assert again.status == "skipped"
    assert count(stream_settings, "events") == stream.rows_loaded


def test_bad_data_in_a_later_file_leaves_no_streamed_row(tmp_path: Path) -> None:
    settings, catalog = streamed(tmp_path)
    data = tmp_path / "data"
    write_events(data, "a.csv", 0)
    bad = write_events(data, "b.csv", ROWS_PER_FILE)
    good_text = bad.read_text(encoding="utf-8")
    bad.write_text(good_text.replace("\n3500,", "\nnot-a-number,"), encoding="utf-8")

    with pytest.raises(BadDataError, match=r"b\.csv"):
        run(RunRequest(pipeline="events"), settings, catalog)
    assert count(settings, "events") == 0  # a.csv's rows were streamed, then rolled back

    bad.write_text(good_text, encoding="utf-8")
    report = run(RunRequest(pipeline="events"), settings, catalog)
    assert report.rows_loaded == count(settings, "events")
    ids = [row[0] for row in query(settings, "select id from ferry.events")]
    assert len(ids) == len(set(ids)) == report.rows_loaded
    assert loaded_ids_are_committed(settings)


def test_failure_after_the_streamed_commit_is_merged_over_on_the_retry(tmp_path: Path) -> None:
    """The rows are committed and dlt's load then fails: the rows are there without a
    completed load, and the retry replaces them instead of adding them again."""
    settings, catalog = streamed(tmp_path)
    write_events(tmp_path / "data", "a.csv", 0)
    write_events(tmp_path / "data", "b.csv", ROWS_PER_FILE)

    def fail() -> None:
        raise ConnectionError("the load step lost its connection")

    with failpoints.hooked("after_streamed_commit", fail), pytest.raises(FerryError):
        run(RunRequest(pipeline="events"), settings, catalog)
    assert count(settings, "events") > 0
    assert not loaded_ids_are_committed(settings)

    report = run(RunRequest(pipeline="events"), settings, catalog)
    assert report.status == "succeeded"
    ids = [row[0] for row in query(settings, "select id from ferry.events")]
    assert len(ids) == len(set(ids)) == report.rows_loaded
    assert loaded_ids_are_committed(settings)


def test_failure_before_the_commit_rolls_the_rows_back(tmp_path: Path) -> None:
    settings, catalog = streamed(tmp_path)
    write_events(tmp_path / "data", "a.csv", 0)

    def fail() -> None:
        raise ConnectionError("the destination went away")

    with failpoints.hooked("during_load", fail), pytest.raises(FerryError):
        run(RunRequest(pipeline="events"), settings, catalog)
    assert count(settings, "events") == 0
    report = run(RunRequest(pipeline="events"), settings, catalog)
    assert report.rows_loaded == count(settings, "events") > 0


def test_streamed_runs_of_one_table_in_parallel_each_land_whole(tmp_path: Path) -> None:
    settings, catalog = streamed(tmp_path)
    files = [write_events(tmp_path / "data", f"{n}.csv", n * ROWS_PER_FILE) for n in range(4)]
    reports: list[Any] = []
    errors: list[BaseException] = []

    def one(path: Path) -> None:
        try:
            reports.append(
                run(RunRequest(pipeline="events", source_uri=str(path)), settings, catalog)
            )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=one, args=(path,)) for path in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = [row[0] for row in query(settings, "select id from ferry.events")]
    assert len(ids) == len(set(ids)) == sum(report.rows_loaded for report in reports)
    assert len(ids) > 3 * ROWS_PER_FILE
    assert loaded_ids_are_committed(settings)


NESTED_PIPELINE = """
pipelines:
  - name: nested
    source:
      uri: data/*.jsonl
    destination:
      table: nested
      write_disposition: append
"""


def test_nested_columns_load_through_dlt_as_before(tmp_path: Path) -> None:
    """dlt stores nested values its own way (JSON); a run with them lands as dlt lands it."""
    tables = []
    for name, threshold in (("plain", 1 << 40), ("streamed", 0)):
        folder = tmp_path / name
        (folder / "data").mkdir(parents=True)
        lines = "".join(
            f'{{"id": {i}, "meta": {{"tag": "t{i % 3}", "n": {i}}}}}\n' for i in range(500)
        )
        (folder / "data" / "a.jsonl").write_text(lines, encoding="utf-8")
        settings = duckdb_settings(folder, streamed_append_bytes=threshold)
        catalog = write_catalog(folder, NESTED_PIPELINE)
        report = run(RunRequest(pipeline="nested"), settings, catalog)
        assert report.rows_loaded == 500
        tables.append(query(settings, "select id, meta from ferry.nested order by id"))
    assert tables[0] == tables[1]
    assert len(tables[1]) == 500
