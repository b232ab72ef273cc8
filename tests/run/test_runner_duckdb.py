"""The engine end to end on the embedded default: files -> transform -> dlt -> DuckDB."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

from app.run.catalog import Catalog, load_catalog
from app.run.report import RunReport
from app.run.runner import RunRequest, run
from core.errors import (
    BadDataError,
    DestinationUnavailableError,
    QualityCheckError,
    RequestError,
    SourceNotFoundError,
    TransformError,
)
from tests.helpers import REPO, count, duckdb_settings, query, write_catalog

ORDERS_HEADER = "OrderID,CustomerID,OrderedAt,Status,Quantity,UnitPrice,Country,Note\n"

ORDERS_PIPELINE = """
pipelines:
  - name: orders
    source:
      uri: data/*.csv
      columns: {Quantity: int64, UnitPrice: float64}
    transform:
      - rename: {OrderID: order_id, Quantity: quantity, UnitPrice: unit_price, Status: status}
      - filter: "status != 'cancelled'"
      - derive: {amount: "quantity * unit_price"}
    destination:
      table: orders
      write_disposition: {disposition}
"""


def orders_catalog(tmp_path: Path, disposition: str = "append") -> Catalog:
    (tmp_path / "data").mkdir(exist_ok=True)
    return write_catalog(tmp_path, ORDERS_PIPELINE.replace("{disposition}", disposition))


def write_orders(path: Path, rows: list[tuple[str, str, int, float]]) -> None:
    """rows: (order id, status, quantity, unit price)"""
    lines = [
        f'{oid},C1,2026-11-01 10:00:00,{status},{qty},{price},DE,"a\nb"\n'
        for oid, status, qty, price in rows
    ]
    path.write_text(ORDERS_HEADER + "".join(lines), encoding="utf-8")


def bump_generation(path: Path) -> None:
    """A local file's generation is its mtime in ns: make it strictly newer."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_demo_pipeline_loads_every_non_cancelled_order(tmp_path: Path) -> None:
    settings = duckdb_settings(tmp_path)
    catalog = load_catalog(REPO / "examples" / "pipelines.yaml")
    expected = 0
    for path in sorted((REPO / "examples" / "data" / "orders").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as file:
            expected += sum(1 for row in csv.DictReader(file) if row["Status"] != "cancelled")

    report = run(RunRequest("orders"), settings, catalog)

    assert report.status == "succeeded"
    assert report.rows_read == 240
    assert report.tables == {"orders": expected}
    assert count(settings, "orders") == expected
    (size_mix,) = query(settings, "select count(distinct order_size) from ferry.orders")
    assert size_mix[0] >= 2
    notes = query(settings, "select count(*) from ferry.orders where note like '%\nring twice'")
    assert notes[0][0] > 0, "quoted multi-line notes survive"
    assert {"list", "extract", "transform", "normalize", "load", "total"} <= set(report.seconds)
    assert report.load_ids


def test_same_files_twice_load_once(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    write_orders(tmp_path / "data" / "a.csv", [("1", "paid", 1, 2.0), ("2", "paid", 2, 3.0)])
    write_orders(tmp_path / "data" / "b.csv", [("3", "paid", 1, 1.0)])

    first = run(RunRequest("orders"), settings, catalog)
    second = run(RunRequest("orders"), settings, catalog)

    assert first.rows_loaded == 3
    assert second.status == "skipped"
    assert [f.status for f in second.files] == ["already_loaded", "already_loaded"]
    assert count(settings, "orders") == 3


def test_newer_generation_replaces_that_objects_rows_only(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    a, b = tmp_path / "data" / "a.csv", tmp_path / "data" / "b.csv"
    write_orders(a, [("1", "paid", 1, 2.0), ("2", "paid", 2, 3.0)])
    write_orders(b, [("3", "paid", 1, 1.0)])
    run(RunRequest("orders"), settings, catalog)

    write_orders(a, [("1", "paid", 5, 2.0)])  # order 2 removed, order 1 changed
    bump_generation(a)
    report = run(RunRequest("orders"), settings, catalog)

    assert [f.status for f in report.files] == ["loaded", "already_loaded"]
    rows = query(settings, "select order_id, quantity from ferry.orders order by order_id")
    assert rows == [(1, 5), (3, 1)]


def test_replace_disposition_reloads_the_whole_table(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path, "replace")
    settings = duckdb_settings(tmp_path)
    write_orders(tmp_path / "data" / "a.csv", [("1", "paid", 1, 2.0)])
    run(RunRequest("orders"), settings, catalog)
    run(RunRequest("orders"), settings, catalog)
    assert count(settings, "orders") == 1


def test_lineage_columns_record_uri_and_generation(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    path = tmp_path / "data" / "a.csv"
    write_orders(path, [("1", "paid", 1, 2.0)])
    run(RunRequest("orders"), settings, catalog)
    rows = query(settings, "select _ferry_source_uri, _ferry_source_generation from ferry.orders")
    assert rows == [(str(path), path.stat().st_mtime_ns)]


def test_source_override_narrows_to_one_file(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    write_orders(tmp_path / "data" / "a.csv", [("1", "paid", 1, 2.0)])
    write_orders(tmp_path / "data" / "b.csv", [("2", "paid", 1, 2.0)])
    report = run(RunRequest("orders", source_uri="data/b.csv"), settings, catalog)
    assert [Path(f.uri).name for f in report.files] == ["b.csv"]
    assert count(settings, "orders") == 1


@pytest.mark.parametrize(
    "outside", ["../elsewhere/x.csv", "/etc/passwd", "gs://other-bucket/x.csv"]
)
def test_source_override_outside_the_pattern_is_refused(tmp_path: Path, outside: str) -> None:
    catalog = orders_catalog(tmp_path)
    with pytest.raises(RequestError, match="outside the pipeline's configured source"):
        run(RunRequest("orders", source_uri=outside), duckdb_settings(tmp_path), catalog)


def test_malformed_file_fails_and_keeps_what_was_loaded(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    write_orders(tmp_path / "data" / "a.csv", [("1", "paid", 1, 2.0)])
    run(RunRequest("orders"), settings, catalog)

    (tmp_path / "data" / "b.csv").write_text(
        ORDERS_HEADER + "2,C1,2026-11-01,paid,1,2.0,DE,x\n3,C1,2026-11-01,paid,1\n",
        encoding="utf-8",
    )
    with pytest.raises(BadDataError, match=r"b\.csv") as caught:
        run(RunRequest("orders"), settings, catalog)
    assert caught.value.pipeline == "orders"
    assert isinstance(caught.value.report, RunReport)
    assert caught.value.report.status == "failed"
    assert "report" not in caught.value.details, "the report is typed, never a dict in details"
    assert count(settings, "orders") == 1, "nothing from the failed run is visible"


def test_wrong_type_in_declared_column_names_file_and_column(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    (tmp_path / "data" / "a.csv").write_text(
        ORDERS_HEADER + "1,C1,2026-11-01,paid,many,2.0,DE,x\n", encoding="utf-8"
    )
    with pytest.raises(BadDataError, match=r"a\.csv.*Quantity|Quantity.*a\.csv"):
        run(RunRequest("orders"), duckdb_settings(tmp_path), catalog)


def test_empty_and_header_only_files_are_a_no_op(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    (tmp_path / "data" / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "data" / "header.csv").write_text(ORDERS_HEADER, encoding="utf-8")
    report = run(RunRequest("orders"), settings, catalog)
    assert report.rows_read == 0
    assert report.rows_loaded == 0
    assert report.error is None
    assert [f.rows_read for f in report.files] == [0, 0]


def test_missing_files_are_a_clear_terminal_error(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    with pytest.raises(SourceNotFoundError, match=r"data/\*\.csv"):
        run(RunRequest("orders"), duckdb_settings(tmp_path), catalog)


def test_transform_failure_names_pipeline_step_and_column(tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: p
            source: {uri: "a.csv"}
            transform: [{cast: {n: int64}}]
            destination: {table: t}
        """,
    )
    (tmp_path / "a.csv").write_text("n\n1\nx\n", encoding="utf-8")
    with pytest.raises(TransformError, match=r"pipeline 'p': step 1 \(cast\), column 'n'"):
        run(RunRequest("p"), duckdb_settings(tmp_path), catalog)


def test_a_later_run_in_the_process_reuses_the_working_dir(tmp_path: Path) -> None:
    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    write_orders(tmp_path / "data" / "a.csv", [("1", "paid", 1, 2.0)])
    run(RunRequest("orders", run_id="run-one"), settings, catalog)
    write_orders(tmp_path / "data" / "b.csv", [("2", "paid", 1, 2.0)])
    second = run(RunRequest("orders", run_id="run-two"), settings, catalog)

    assert second.rows_loaded == 1 and count(settings, "orders") == 2
    (kept,) = (settings.data_dir / "runs").iterdir()
    assert kept.name.startswith("run-one-")


def test_formats_jsonl_gzip_and_parquet(tmp_path: Path) -> None:
    import gzip
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    with gzip.open(tmp_path / "in" / "a.jsonl.gz", "wt", encoding="utf-8") as file:
        file.write(json.dumps({"id": 1, "v": "x"}) + "\n" + json.dumps({"id": 2, "v": "y"}) + "\n")
    pq.write_table(pa.table({"id": [3, 4], "v": ["z", "w"]}), tmp_path / "in" / "b.parquet")
    shutil.copy(tmp_path / "in" / "a.jsonl.gz", tmp_path / "in" / "c.ndjson.gz")
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: mixed
            source: {uri: "in/*"}
            destination: {table: mixed, write_disposition: merge, primary_key: [id]}
        """,
    )
    settings = duckdb_settings(tmp_path)
    report = run(RunRequest("mixed"), settings, catalog)
    assert report.rows_read == 6
    assert query(settings, "select id from ferry.mixed order by id") == [(1,), (2,), (3,), (4,)]


def test_jsonl_declared_columns_only_land_typed(tmp_path: Path) -> None:
    """`undeclared_columns: ignore` (DuckDB's JSON reader): the declared columns land with
    their types, from a plain and a gzip file; the other fields do not."""
    import gzip

    lines = (
        '{"id": 1, "at": "2026-09-13T06:05:07.352405+05:30", "price": 2, "note": "x"}\n'
        '{"id": 2, "at": "2026-09-13T01:00:00Z", "price": 2.5, "other": [1]}\n'
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(lines, encoding="utf-8")
    (tmp_path / "in" / "b.jsonl.gz").write_bytes(
        gzip.compress(lines.replace('"id": ', '"id": 1').encode())
    )
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: events
            source:
              uri: "in/*"
              columns: {id: int64, at: timestamp, price: float64}
              undeclared_columns: ignore
            destination: {table: events}
        """,
    )
    settings = duckdb_settings(tmp_path)
    report = run(RunRequest("events"), settings, catalog)
    assert (report.rows_read, report.rows_loaded) == (4, 4)
    columns = query(
        settings,
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'ferry' and table_name = 'events' "
        "and column_name not like '\\_%' escape '\\' order by ordinal_position",
    )
    assert columns == [("id", "BIGINT"), ("at", "TIMESTAMP WITH TIME ZONE"), ("price", "DOUBLE")]
    rows = query(
        settings, "select id, hour(\"at\" at time zone 'UTC'), price from ferry.events order by id"
    )
    assert rows == [(1, 0, 2.0), (2, 1, 2.5), (11, 0, 2.0), (12, 1, 2.5)]


def test_a_run_racing_another_on_the_same_new_file_aborts_instead_of_duplicating(
    tmp_path: Path,
) -> None:
    """New objects are appended on DuckDB; a run that loses the race must not append twice."""

    catalog = orders_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    write_orders(tmp_path / "data" / "a.csv", [("1", "paid", 1, 2.0), ("2", "paid", 1, 2.0)])
    raced: list[RunReport] = []

    def other_run_first(report: RunReport) -> None:
        if not raced and "normalize" in report.seconds:  # extracted, about to load
            raced.append(run(RunRequest("orders"), settings, catalog))

    with pytest.raises(DestinationUnavailableError, match="another run loaded"):
        run(RunRequest("orders"), settings, catalog, progress=other_run_first)
    assert raced[0].rows_loaded == 2
    assert count(settings, "orders") == 2
    retry = run(RunRequest("orders"), settings, catalog)
    assert [f.status for f in retry.files] == ["already_loaded"]
    assert count(settings, "orders") == 2


@pytest.mark.parametrize("disposition", ["append", "merge"])
def test_rejected_rows_are_kept_and_counted(tmp_path: Path, disposition: str) -> None:
    keys = "primary_key: [id]" if disposition == "merge" else ""
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: typed
            source:
              uri: "in/*.csv"
              columns: {{id: int64, amount: float64, day: date}}
              on_bad_rows: reject
            destination: {{table: typed, write_disposition: {disposition}, {keys}}}
        """,
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text(
        "id,amount,day\n1,2.5,2026-01-01\n2,abc,2026-01-02\n3,4,5,6\n4,7,not-a-day\n5,1e3,2026-01-05\n",
        encoding="utf-8",
    )
    settings = duckdb_settings(tmp_path)

    report = run(RunRequest("typed"), settings, catalog)
    again = run(RunRequest("typed"), settings, catalog)

    assert report.rows_read == 5
    assert report.rows_loaded == 2
    assert report.rows_rejected == 3
    assert report.rows_read == report.rows_loaded + report.rows_rejected
    assert query(settings, "select id from ferry.typed order by id") == [(1,), (5,)]
    rejects = query(settings, "select reason, raw from ferry.typed__rejects order by reason")
    assert [reason for reason, _ in rejects] == [
        "column 'amount': 'abc' is not float64",
        "column 'day': 'not-a-day' is not date",
        "expected 3 fields, got 4",
    ]
    assert rejects[2][1] == "3,4,5,6"
    assert again.status == "skipped"
    assert count(settings, "typed__rejects") == 3


CHECKED = """
pipelines:
  - name: checked
    source: {uri: "in/*.csv", columns: {id: int64, amount: float64}}
    checks:
      not_null: [id]
      unique: [id]
      accepted_values: {status: [paid, shipped]}
      range: {amount: {min: 0, max: 1000}}
      min_rows: 2
      quarantine_prefix: quarantine
    destination: {table: checked}
"""


@pytest.mark.parametrize(
    ("rows", "check"),
    [
        pytest.param("1,paid,5\n,paid,6\n", "not_null on 'id'", id="not-null"),
        pytest.param("1,paid,5\n1,paid,6\n", "unique on 'id'", id="unique"),
        pytest.param("1,paid,5\n2,lost,6\n", "accepted_values on 'status'", id="accepted-values"),
        pytest.param("1,paid,5\n2,paid,-1\n", "range on 'amount'", id="range"),
        pytest.param("1,paid,5\n", "min_rows", id="min-rows"),
    ],
)
def test_failing_quality_gate_loads_nothing_of_the_file_and_quarantines_it(
    tmp_path: Path, rows: str, check: str
) -> None:

    catalog = write_catalog(tmp_path, CHECKED)
    settings = duckdb_settings(tmp_path)
    (tmp_path / "in").mkdir()
    good = tmp_path / "in" / "a.csv"
    good.write_text("id,status,amount\n10,paid,1\n11,shipped,2\n", encoding="utf-8")
    assert run(RunRequest("checked"), settings, catalog).rows_loaded == 2
    bad = tmp_path / "in" / "b.csv"
    bad.write_text("id,status,amount\n" + rows, encoding="utf-8")

    with pytest.raises(QualityCheckError, match=f"check {check}") as caught:
        run(RunRequest("checked"), settings, catalog)

    assert count(settings, "checked") == 2, "nothing of the failing file is visible"
    copied = Path(caught.value.details["quarantined_to"])
    assert copied.read_text(encoding="utf-8") == bad.read_text(encoding="utf-8")
    assert check.split()[0] in copied.with_name(copied.name + ".reason.json").read_text()
    assert isinstance(caught.value.report, RunReport)
    failed = [f for f in caught.value.report.files if f.status == "failed"]
    assert [Path(f.uri).name for f in failed] == ["b.csv"]


def test_freshness_gate(tmp_path: Path) -> None:

    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: fresh
            source: {uri: "in/*.csv", columns: {at: timestamp}}
            checks: {freshness: {column: at, max_age_hours: 24}}
            destination: {table: fresh}
        """,
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("id,at\n1,2020-01-01T00:00:00Z\n", encoding="utf-8")
    with pytest.raises(QualityCheckError, match="check freshness on 'at'"):
        run(RunRequest("fresh"), duckdb_settings(tmp_path), catalog)
