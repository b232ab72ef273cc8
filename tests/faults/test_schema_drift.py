"""Schema drift, empty and vanishing inputs, through the runner into DuckDB: a new column is
added as nullable, a changed type evolves or fails per the pipeline's contract (never a silent
change of a value), an empty file is a no-op, and an object gone before it is read fails the
run terminally with nothing of it loaded."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.run.catalog import Catalog
from app.run.report import RunReport
from app.run.runner import RunRequest, run
from core.errors import BadDataError, FerryError, SchemaContractError, SourceNotFoundError
from core.settings import Settings
from tests.helpers import REPO, count, duckdb_settings, query, write_catalog

PIPELINE = """
pipelines:
  - name: drift
    source: {uri: "in/*", columns: {id: int64}, on_bad_rows: reject}
    destination: {table: drift, schema_contract: CONTRACT, DISPOSITION}
"""

DISPOSITIONS = {
    "append": "write_disposition: append",
    "merge": "write_disposition: merge, primary_key: [id]",
}


def drift_catalog(tmp_path: Path, contract: str = "evolve", disposition: str = "append") -> Catalog:
    (tmp_path / "in").mkdir(exist_ok=True)
    text = PIPELINE.replace("CONTRACT", contract).replace("DISPOSITION", DISPOSITIONS[disposition])
    return write_catalog(tmp_path, text)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def columns(settings: Settings, table: str = "drift") -> dict[str, str]:
    rows = query(
        settings,
        "select column_name, data_type from information_schema.columns "
        f"where table_schema = 'ferry' and table_name = '{table}' "
        "and column_name not like '\\_%' escape '\\'",
    )
    return {str(name): str(kind) for name, kind in rows}


def rows(settings: Settings, select: str = "id, amount") -> list[tuple[Any, ...]]:
    return query(settings, f"select {select} from ferry.drift order by id")


def distinct_ids(settings: Settings) -> int:
    return int(query(settings, "select count(distinct id) from ferry.drift")[0][0])


def failure(error: FerryError) -> dict[str, Any]:
    assert error.report is not None
    report = error.report.to_dict()
    assert report["status"] == "failed"
    return report


# --- a new column ------------------------------------------------------------------------


@pytest.mark.parametrize("disposition", list(DISPOSITIONS))
def test_a_new_column_in_a_later_run_is_added_nullable(tmp_path: Path, disposition: str) -> None:
    catalog = drift_catalog(tmp_path, disposition=disposition)
    settings = duckdb_settings(tmp_path)
    write(tmp_path / "in" / "a.csv", "id,amount\n1,10\n2,20\n")
    run(RunRequest("drift"), settings, catalog)

    write(tmp_path / "in" / "b.csv", "id,amount,note\n3,30,late\n4,40,\n")
    report = run(RunRequest("drift"), settings, catalog)

    assert report.rows_loaded == 2
    assert columns(settings) == {"id": "BIGINT", "amount": "BIGINT", "note": "VARCHAR"}
    assert rows(settings, "id, amount, note") == [
        (1, 10, None),
        (2, 20, None),
        (3, 30, "late"),
        (4, 40, None),
    ]
    assert count(settings, "drift") == 4 == distinct_ids(settings)


def test_files_of_one_run_with_different_columns_load_into_their_union(tmp_path: Path) -> None:
    catalog = drift_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    write(tmp_path / "in" / "a.csv", "id,amount\n1,10\n")
    write(tmp_path / "in" / "b.csv", "id,note,amount\n2,x,20\n")  # new column, other order
    write(tmp_path / "in" / "c.jsonl", json.dumps({"id": 3, "tag": "q"}) + "\n")  # one missing

    report = run(RunRequest("drift"), settings, catalog)

    assert report.rows_read == report.rows_loaded == 3
    assert rows(settings, "id, amount, note, tag") == [
        (1, 10, None, None),
        (2, 20, "x", None),
        (3, None, None, "q"),
    ]


def test_a_new_column_under_a_frozen_contract_fails_and_loads_nothing(tmp_path: Path) -> None:
    catalog = drift_catalog(tmp_path, contract="freeze")
    settings = duckdb_settings(tmp_path)
    write(tmp_path / "in" / "a.csv", "id,amount\n1,10\n")
    run(RunRequest("drift"), settings, catalog)

    write(tmp_path / "in" / "b.csv", "id,amount\n2,20\n")
    c = write(tmp_path / "in" / "c.csv", "id,amount,note\n3,30,late\n")
    with pytest.raises(SchemaContractError, match="note") as caught:
        run(RunRequest("drift"), settings, catalog)

    assert not caught.value.retriable
    failure(caught.value)
    assert columns(settings) == {"id": "BIGINT", "amount": "BIGINT"}
    assert rows(settings) == [(1, 10)], "b.csv, fine on its own, is not half-loaded either"

    write(c, "id,amount\n3,30\n")  # the producer drops the column again
    retry = run(RunRequest("drift"), settings, catalog)
    assert retry.rows_loaded == 2
    assert rows(settings) == [(1, 10), (2, 20), (3, 30)]


# --- a changed type ---------------------------------------------------------------------

TYPE_CHANGES = [
    pytest.param("abc", "abc", id="text-into-bigint"),
    pytest.param("2.5", 2.5, id="fraction-into-bigint"),
    pytest.param("true", True, id="bool-into-bigint"),
]


@pytest.mark.parametrize(("text", "value"), TYPE_CHANGES)
def test_evolve_never_changes_a_value_of_a_column_whose_type_changed(
    tmp_path: Path, text: str, value: object
) -> None:
    """Either the value is kept (as is, or in a variant column) or the run fails and loads
    nothing of it: never a silent change."""
    catalog = drift_catalog(tmp_path, contract="evolve", disposition="merge")
    settings = duckdb_settings(tmp_path)
    write(tmp_path / "in" / "a.csv", "id,amount\n1,10\n2,20\n")
    run(RunRequest("drift"), settings, catalog)

    write(tmp_path / "in" / "b.csv", f"id,amount\n3,{text}\n")
    try:
        report = run(RunRequest("drift"), settings, catalog)
    except FerryError as error:
        assert not error.retriable, "the same data fails the same way again"
        assert rows(settings) == [(1, 10), (2, 20)]
        return
    assert report.rows_loaded == 1
    (changed,) = query(settings, "select * from ferry.drift where id = 3")
    assert value in changed and type(value) in {type(v) for v in changed}, (
        f"the value {value!r} survives in some column: {changed}"
    )


def test_a_load_that_fails_keeps_none_of_its_rejects(tmp_path: Path) -> None:
    catalog = drift_catalog(tmp_path, contract="evolve")
    settings = duckdb_settings(tmp_path)
    write(tmp_path / "in" / "a.csv", "id,amount\n1,10\n")
    run(RunRequest("drift"), settings, catalog)

    write(tmp_path / "in" / "b.csv", "id,amount\n2,abc\nnot-an-id,3\n")
    for _ in range(2):
        with pytest.raises(FerryError):
            run(RunRequest("drift"), settings, catalog)

    assert rows(settings) == [(1, 10)]
    assert count(settings, "drift__rejects") == 0


@pytest.mark.parametrize("text", ["abc", "2.5", "true"], ids=["text", "fraction", "bool"])
def test_freeze_refuses_a_changed_type_and_loads_nothing(tmp_path: Path, text: str) -> None:
    catalog = drift_catalog(tmp_path, contract="freeze")
    settings = duckdb_settings(tmp_path)
    write(tmp_path / "in" / "a.csv", "id,amount\n1,10\n")
    run(RunRequest("drift"), settings, catalog)

    write(tmp_path / "in" / "b.csv", f"id,amount\n2,{text}\n3,{text}\n")
    with pytest.raises(SchemaContractError, match="amount") as caught:
        run(RunRequest("drift"), settings, catalog)

    assert not caught.value.retriable
    failure(caught.value)
    assert columns(settings) == {"id": "BIGINT", "amount": "BIGINT"}
    assert rows(settings) == [(1, 10)]


@pytest.mark.parametrize(
    ("first", "second", "types"),
    [
        ("10", "2.5", "int64 here.*double|double here.*int64"),
        ("1.5", "abc", "string here but double"),
    ],
    ids=["int-then-fraction", "float-then-text"],
)
def test_files_of_one_run_that_disagree_on_a_type_fail_with_a_hint(
    tmp_path: Path, first: str, second: str, types: str
) -> None:
    catalog = drift_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    write(tmp_path / "in" / "a.csv", f"id,amount\n1,{first}\n")
    write(tmp_path / "in" / "b.csv", f"id,amount\n2,{second}\n")
    with pytest.raises(BadDataError, match=types) as caught:
        run(RunRequest("drift"), settings, catalog)
    assert "source.columns" in str(caught.value), "says how to fix it"
    assert count(settings, "drift") == 0


def test_a_declared_type_absorbs_the_drift(tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: drift
            source: {uri: "in/*", columns: {id: int64, amount: float64}}
            destination: {table: drift}
        """,
    )
    settings = duckdb_settings(tmp_path)
    (tmp_path / "in").mkdir()
    write(tmp_path / "in" / "a.csv", "id,amount\n1,10\n")
    write(tmp_path / "in" / "b.csv", "id,amount\n2,2.5\n")
    run(RunRequest("drift"), settings, catalog)
    assert rows(settings) == [(1, 10.0), (2, 2.5)]


# --- empty inputs ----------------------------------------------------------------------


def empty_inputs(folder: Path) -> None:
    write(folder / "empty.csv", "")
    write(folder / "header-only.csv", "id,amount\n")
    (folder / "empty.csv.gz").write_bytes(gzip.compress(b""))
    (folder / "header-only.csv.gz").write_bytes(gzip.compress(b"id,amount\n"))
    write(folder / "empty.jsonl", "")
    write(folder / "blank-line.jsonl", "\n")
    pq.write_table(pa.table({"id": pa.array([], pa.int64())}), folder / "no-rows.parquet")


def test_empty_files_are_a_successful_no_op(tmp_path: Path) -> None:
    catalog = drift_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    write(tmp_path / "in" / "a.csv", "id,amount\n1,10\n")
    run(RunRequest("drift"), settings, catalog)
    empty_inputs(tmp_path / "in")

    report = run(RunRequest("drift"), settings, catalog)
    again = run(RunRequest("drift"), settings, catalog)

    assert report.error is None and report.status in ("succeeded", "skipped")
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (0, 0, 0)
    statuses = {Path(f.uri).name: (f.status, f.rows_read) for f in report.files}
    assert statuses["a.csv"] == ("already_loaded", 0)
    assert {s for name, s in statuses.items() if name != "a.csv"} == {("loaded", 0)}
    assert again.error is None
    assert rows(settings) == [(1, 10)]
    assert count(settings, "drift__rejects") == 0


def test_empty_files_alongside_data_load_exactly_the_data(tmp_path: Path) -> None:
    catalog = drift_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    empty_inputs(tmp_path / "in")
    write(tmp_path / "in" / "z.csv", "id,amount\n1,10\n2,20\n")
    report = run(RunRequest("drift"), settings, catalog)
    assert (report.rows_read, report.rows_loaded) == (2, 2)
    assert rows(settings) == [(1, 10), (2, 20)]


# --- an object gone before it is read ---------------------------------------------------


def test_an_object_deleted_after_listing_fails_the_run_and_loads_nothing(tmp_path: Path) -> None:
    catalog = drift_catalog(tmp_path)
    settings = duckdb_settings(tmp_path, batch_bytes=64 << 10)
    write(tmp_path / "in" / "a-earlier.csv", "id,amount\n1,10\n")
    run(RunRequest("drift"), settings, catalog)
    body = "".join(f"{n},{n}\n" for n in range(100, 20_100))
    write(tmp_path / "in" / "b.csv", "id,amount\n" + body)
    gone = write(tmp_path / "in" / "c-gone.csv", "id,amount\n5,50\n")

    def delete_once_reading(report: RunReport) -> None:
        if gone.exists() and report.rows_read:  # b.csv is being read; c-gone.csv was listed
            gone.unlink()

    with pytest.raises(SourceNotFoundError, match=r"c-gone\.csv") as caught:
        run(RunRequest("drift"), settings, catalog, progress=delete_once_reading)

    assert not caught.value.retriable
    report = failure(caught.value)
    assert "c-gone.csv" in report["error"]["message"]
    assert [Path(f["uri"]).name for f in report["files"]] == [
        "a-earlier.csv",
        "b.csv",
        "c-gone.csv",
    ]
    assert rows(settings) == [(1, 10)], "b.csv, read before the failure, is not half-loaded"
    retry = run(RunRequest("drift"), settings, catalog)
    assert retry.rows_loaded == 20_000
    assert count(settings, "drift") == 20_001 == distinct_ids(settings)


def test_a_notification_for_a_deleted_object_is_terminal_and_logged(tmp_path: Path) -> None:
    """The job CLI, as Cloud Run runs it for one object: exit 2, an ERROR log naming it."""
    drift_catalog(tmp_path)
    write(tmp_path / "in" / "a.csv", "id,amount\n1,10\n")
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "CLOUD_RUN_", "BIGQUERY_", "STORAGE_"))
    }
    environment |= {
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_DESTINATION": "duckdb",
        "FERRY_LOG_FORMAT": "json",
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "run", "drift", "--source", "in/deleted.csv"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    errors = [line for line in logged if line["severity"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["error"]["code"] == "source_not_found"
    assert "deleted.csv" in errors[0]["message"]
    assert count(duckdb_settings(tmp_path), "drift") == 0
