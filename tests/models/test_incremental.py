"""Incremental models (app/models/incremental*.py, watermark.py) on DuckDB and on the BigQuery
emulator: after objects load one at a time, an incremental model holds the rows the same SQL
built as a table holds, while each build reads only the new loads' rows (`rows_read` in the
run report); deletes or replacements upstream, a changed SQL, a full refresh, a build that
committed its rows but not its mark: the model is read whole again."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.edges.cli import main
from app.edges.server import create_app
from app.models.report import ModelReport
from app.run.catalog import Catalog
from app.run.request import MODELS_RUN
from app.run.runner import RunRequest, run
from core import failpoints
from core.errors import FerryError
from core.settings import Settings
from tests.emulators import BigQueryEmulator
from tests.helpers import duckdb_settings, query, write_catalog

SQL = "SELECT id, amount * 10 AS amount10, UPPER(kind) AS kind FROM events WHERE amount > 0"
COLUMNS = "id, amount10, kind"


class Destination:
    """One engine's settings and a reader of its dataset (`ds.<table>` in the SQL)."""

    def __init__(self, settings: Settings, read: Callable[[str], list[tuple[Any, ...]]]) -> None:
        self.settings = settings
        self.read = read

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        return sorted(self.read(f"SELECT {COLUMNS} FROM ds.{table}"))

    def mark(self, model: str) -> str:
        # rows are appended: the newest counts (a forgotten mark has no upstream)
        (row,) = self.read(
            f"SELECT load_id FROM ds._ferry_model_loads WHERE model = '{model}' "
            "ORDER BY SUBSTR(run_id, 1, 15) DESC, upstream = '' DESC, load_id DESC LIMIT 1"
        )
        return str(row[0])

    def newest_load(self, table: str) -> str:
        (row,) = self.read(f"SELECT MAX(_dlt_load_id) FROM ds.{table}")
        return str(row[0])


@pytest.fixture(params=["duckdb", pytest.param("bigquery", marks=pytest.mark.emulators)])
def destination(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Destination:
    if request.param == "duckdb":
        settings = duckdb_settings(tmp_path, run_log=False)
        return Destination(
            settings, lambda sql: query(settings, sql.replace("ds.", f"{settings.dataset_name}."))
        )
    emulator: BigQueryEmulator = request.getfixturevalue("bigquery_env")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("DATA_WRITER__DISABLE_COMPRESSION", "true")
    settings = Settings(
        destination="bigquery",
        bigquery_project=emulator.project,
        bigquery_dataset=unique_name,
        bigquery_emulator_host=emulator.endpoint,
        storage_emulator_host=None,
        data_dir=tmp_path / "data",
        run_log=False,
    )
    dataset = f"`{emulator.project}.{unique_name}`."

    def read(sql: str) -> list[tuple[Any, ...]]:
        job = emulator.client().query(sql.replace("ds.", dataset))
        return [tuple(row.values()) for row in job.result()]

    return Destination(settings, read)


def events_catalog(folder: Path, models: str) -> Catalog:
    (folder / "in").mkdir(exist_ok=True)
    return write_catalog(
        folder,
        f"""
        pipelines:
          - name: events
            source: {{uri: "{folder}/in/*.csv", columns: {{id: int64, amount: int64}}}}
            destination: {{table: events, write_disposition: append}}
        models:{models or " []"}
        """,
    )


MODELS = f"""
          - {{name: full, sql: "{SQL}"}}
          - {{name: appended, materialization: incremental, sql: "{SQL}"}}
          - {{name: merged, materialization: incremental, unique_key: [id], sql: "{SQL}"}}
          - {{name: checked, materialization: incremental, sql: "SELECT * FROM events",
              checks: {{not_null: [id]}}}}
"""


def put(folder: Path, name: str, rows: list[tuple[int, int, str]]) -> None:
    text = "id,amount,kind\n" + "".join(f"{i},{a},{k}\n" for i, a, k in rows)
    (folder / "in" / f"{name}.csv").write_text(text, encoding="utf-8")


def built(report_models: list[ModelReport], name: str) -> ModelReport:
    (model,) = [m for m in report_models if m.name == name]
    assert model.status == "built", model
    return model


def test_incremental_models_read_only_new_loads_and_hold_the_tables_rows(
    tmp_path: Path, destination: Destination
) -> None:
    catalog = events_catalog(tmp_path, MODELS)
    objects = [
        [(1, 5, "a"), (2, 0, "b")],  # amount 0 is filtered out
        [(3, 7, "c"), (4, 8, "a"), (5, 9, "b")],
        [(6, 1, "c"), (1, 6, "z"), (7, 2, "a"), (8, 3, "b")],  # id 1 again
        [(9, 4, "a")],
    ]
    for n, rows in enumerate(objects):
        put(tmp_path, f"{n}", rows)
        report = run(RunRequest("events"), destination.settings, catalog)

        appended, merged = built(report.models, "appended"), built(report.models, "merged")
        full = destination.rows("full")
        assert destination.rows("appended") == full
        # with checks, or a `*`, the new rows are built and checked under a name of their own
        assert built(report.models, "checked").rows_read == len(rows)
        loaded = sum(len(rows) for rows in objects[: n + 1])
        assert destination.read("SELECT COUNT(*) FROM ds.checked") == [(loaded,)]
        if n == 0:
            assert appended.reason == "read all rows: it is built for the first time"
        else:
            assert appended.reason is None and merged.reason is None
        assert appended.rows_read == merged.rows_read == len(rows), "only the new load's rows"
        assert built(report.models, "full").rows_read is None
        newest = destination.newest_load("events")
        assert destination.mark("appended") == destination.mark("merged") == newest

    # merged on id: the later load's row for id 1 replaced the first one
    assert destination.rows("merged") == [row for row in full if row != (1, 50, "A")]
    assert (1, 60, "Z") in destination.rows("merged")


def test_a_full_refresh_and_a_changed_sql_read_everything_again(
    tmp_path: Path, destination: Destination
) -> None:
    catalog = events_catalog(tmp_path, MODELS)
    put(tmp_path, "0", [(1, 5, "a"), (2, 6, "b")])
    run(RunRequest("events"), destination.settings, catalog)
    put(tmp_path, "1", [(3, 7, "c")])
    run(RunRequest("events"), destination.settings, catalog)

    refresh = run(
        RunRequest(MODELS_RUN, models=("appended",), full_refresh=True),
        destination.settings,
        catalog,
    )
    (appended,) = refresh.models
    assert (appended.status, appended.rows_read) == ("built", 3)
    assert appended.reason == "read all rows: a full refresh was asked for"
    assert destination.rows("appended") == destination.rows("full")

    again = run(RunRequest(MODELS_RUN, models=("appended",)), destination.settings, catalog)
    assert (again.models[0].rows_read, again.models[0].reason) == (0, None), "nothing new"

    changed = events_catalog(tmp_path, MODELS.replace("amount > 0", "amount > 5"))
    rebuilt = run(RunRequest(MODELS_RUN, models=("appended",)), destination.settings, changed)
    assert rebuilt.models[0].reason == "read all rows: its SQL or unique_key changed"
    assert destination.rows("appended") == [(2, 60, "B"), (3, 70, "C")]


CDC_MODELS = """\
          - {name: full, sql: "SELECT id, seq FROM accounts"}
          - {name: appended, materialization: incremental, sql: "SELECT id, seq FROM accounts"}
"""


def test_deletes_and_replacements_upstream_read_the_model_whole(
    tmp_path: Path, destination: Destination
) -> None:
    (tmp_path / "in").mkdir()
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: cdc
            source: {{uri: "{tmp_path}/in/*.csv", columns: {{id: int64, seq: int64}}}}
            destination:
              table: accounts
              write_disposition: merge
              primary_key: [id]
              sequence: seq
              cdc: {{operation_column: op, delete_values: [d], deletes: hard}}
        models:
{CDC_MODELS}
        """,
    )

    # each file also deletes a key never loaded: on the BigQuery emulator a CDC file without
    # a delete loads no rows (found here, not fixed here: ferry's BigQuery CDC path)
    never_seen = "99,0,,d\n"

    def change(name: str, text: str) -> ModelReport:
        text = "id,seq,v,op\n" + text + never_seen
        (tmp_path / "in" / f"{name}.csv").write_text(text, encoding="utf-8")
        report = run(RunRequest("cdc"), destination.settings, catalog)
        model = built(report.models, "appended")
        rows = sorted(destination.read("SELECT id, seq FROM ds.appended"))
        assert rows == sorted(destination.read("SELECT id, seq FROM ds.full"))
        return model

    change("0", "1,1,a,u\n2,1,b,u\n3,1,c,u\n")
    inserted = change("1", "4,2,d,u\n")
    assert (inserted.reason, inserted.rows_read) == (None, 1), "a new key: only its load"
    deleted = change("2", "2,3,,d\n")
    assert deleted.reason is not None and "deleted or replaced" in deleted.reason
    assert deleted.rows_read == 3
    updated = change("3", "1,4,e,u\n")
    assert updated.reason is not None and "deleted or replaced" in updated.reason
    assert sorted(destination.read("SELECT id, seq FROM ds.appended")) == [(1, 4), (3, 1), (4, 2)]


def test_a_build_that_fails_keeps_its_mark_and_reads_the_same_loads_again(
    tmp_path: Path, destination: Destination
) -> None:
    catalog = events_catalog(tmp_path, MODELS)
    put(tmp_path, "0", [(1, 5, "a")])
    run(RunRequest("events"), destination.settings, catalog)
    mark = destination.mark("appended")

    def lose_the_connection() -> None:
        raise ConnectionError("the connection was lost")

    put(tmp_path, "1", [(2, 6, "b"), (3, 7, "c")])
    with failpoints.hooked("incremental_read", lose_the_connection), pytest.raises(FerryError):
        run(RunRequest("events"), destination.settings, catalog)
    assert destination.mark("appended") == mark
    assert destination.rows("appended") == [(1, 50, "A")]

    # the rows commit, the mark does not
    with failpoints.hooked("incremental_record", lose_the_connection), pytest.raises(FerryError):
        run(RunRequest(MODELS_RUN, models=("appended",)), destination.settings, catalog)
    assert destination.mark("appended") == mark

    healed = run(RunRequest(MODELS_RUN, models=("appended",)), destination.settings, catalog)
    reason = "read all rows: its table changed since its last recorded build"
    assert healed.models[0].reason == reason, "not appended to twice"
    assert destination.rows("appended") == destination.rows("full")


def test_an_incremental_model_over_a_model_reads_it_whole(
    tmp_path: Path, destination: Destination
) -> None:
    models = f"""
          - {{name: full, sql: "{SQL}"}}
          - {{name: keyed, materialization: incremental, unique_key: [id],
              sql: "SELECT id, amount10 FROM full"}}
"""
    catalog = events_catalog(tmp_path, models)
    for n in range(2):
        put(tmp_path, f"{n}", [(n, 5, "a")])
        report = run(RunRequest("events"), destination.settings, catalog)
        keyed = built(report.models, "keyed")
        assert keyed.reason == "read all rows: it reads model full, whose rows carry no load id"
    assert sorted(destination.read("SELECT id, amount10 FROM ds.keyed")) == [(0, 50), (1, 50)]


def test_two_builds_at_once_add_the_new_rows_once(tmp_path: Path, destination: Destination) -> None:
    if destination.settings.destination_kind == "duckdb":
        pytest.skip("DuckDB's file lock already runs one build at a time")
    catalog = events_catalog(tmp_path, MODELS)
    put(tmp_path, "0", [(1, 5, "a")])
    run(RunRequest("events"), destination.settings, catalog)
    unbuilt = events_catalog(tmp_path, "")  # loads without building
    put(tmp_path, "1", [(2, 6, "b"), (3, 7, "c")])
    run(RunRequest("events"), destination.settings, unbuilt)

    # the first build waits after reading its mark until the second has either waited for
    # the model's writer or read the same mark
    guard = threading.Lock()
    first_there, second_moved = threading.Event(), threading.Event()

    def at_read() -> None:
        with guard:
            first = not first_there.is_set()
            first_there.set()
        if not first:
            second_moved.set()
            return
        deadline = time.monotonic() + 120
        while not second_moved.is_set():
            assert time.monotonic() < deadline, "the second build never moved"
            time.sleep(0.01)

    reports: list[Any] = []

    def build() -> None:
        request = RunRequest(MODELS_RUN, models=("appended",))
        reports.append(run(request, destination.settings, catalog))

    with (
        failpoints.hooked("incremental_read", at_read),
        failpoints.hooked("writer_waiting", second_moved.set),
    ):
        one, two = threading.Thread(target=build), threading.Thread(target=build)
        one.start()
        while not first_there.is_set():
            time.sleep(0.01)
        two.start()
        one.join()
        two.join()

    assert sorted(report.models[0].rows_read for report in reports) == [0, 2]
    assert destination.rows("appended") == [(1, 50, "A"), (2, 60, "B"), (3, 70, "C")]


def test_a_full_refresh_is_asked_for_over_http_and_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = duckdb_settings(tmp_path, run_log=False)
    catalog = events_catalog(tmp_path, MODELS)
    put(tmp_path, "0", [(1, 5, "a"), (2, 6, "b")])
    run(RunRequest("events"), settings, catalog)
    whole = "read all rows: a full refresh was asked for"

    with TestClient(create_app(settings)) as client:
        refreshed = client.post("/runs", json={"models": ["appended"], "full_refresh": True})
        assert refreshed.status_code == 200, refreshed.text
        (model,) = refreshed.json()["models"]
        assert (model["reason"], model["rows_read"]) == (whole, 2)
        alone = client.post("/runs", json={"pipeline": "events", "full_refresh": True})
        assert alone.status_code == 400, alone.text

    for name, value in {
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(settings.data_dir),
        "FERRY_DESTINATION": "duckdb",
        "FERRY_RUN_LOG": "false",
        "FERRY_LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["build", "--full-refresh", "merged"]) == 0
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert (model["name"], model["reason"]) == ("merged", whole)
    assert main(["build", "merged"]) == 0
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert (model["reason"], model["rows_read"]) == (None, 0)


def test_min_rows_counts_the_table_not_one_loads_rows(tmp_path: Path) -> None:
    settings = duckdb_settings(tmp_path, run_log=False)
    models = f"""
          - {{name: appended, materialization: incremental, sql: "{SQL}",
              checks: {{min_rows: 2}}}}
"""
    catalog = events_catalog(tmp_path, models)
    put(tmp_path, "0", [(1, 5, "a"), (2, 6, "b")])
    run(RunRequest("events"), settings, catalog)
    put(tmp_path, "1", [(3, 7, "c")])
    report = run(RunRequest("events"), settings, catalog)
    assert [(m.status, m.rows, m.rows_read) for m in report.models] == [("built", 1, 1)]


def test_sql_that_reads_everything_for_a_while_and_then_changes_back_reads_everything(
    tmp_path: Path, destination: Destination
) -> None:
    def catalog(sql: str) -> Catalog:
        model = f'{{name: merged, materialization: incremental, unique_key: [id], sql: "{sql}"}}'
        return events_catalog(tmp_path, f"\n          - {model}\n")

    first = catalog(SQL)
    put(tmp_path, "0", [(1, 5, "a")])
    run(RunRequest("events"), destination.settings, first)
    # for a while the SQL has a QUALIFY (read whole, merged) and other values
    other = SQL.replace("amount * 10", "amount * 100")
    other += " QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY amount) = 1"
    put(tmp_path, "1", [(2, 6, "b")])
    meanwhile = run(RunRequest("events"), destination.settings, catalog(other))
    assert meanwhile.models[0].reason == "read all rows: it has QUALIFY"

    put(tmp_path, "2", [(3, 7, "c")])
    back = run(RunRequest("events"), destination.settings, catalog(SQL))
    assert back.models[0].reason == "read all rows: it has no record of a previous build"
    assert destination.rows("merged") == [(1, 50, "A"), (2, 60, "B"), (3, 70, "C")]
