"""The engine against the local Cloud Storage and BigQuery emulators, and a local HTTP API."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.destinations.staging import kept_staging_pattern
from app.run.catalog import Catalog, load_catalog
from app.run.runner import RunRequest, run
from core.settings import Settings
from tests.emulators import BigQueryEmulator, GcsEmulator
from tests.helpers import REPO, duckdb_settings, query, write_catalog
from tests.sources.api_server import ApiServer, Received, Reply, serve

pytestmark = pytest.mark.emulators


def csv_gz(rows: list[tuple[int, str]]) -> bytes:
    return gzip.compress(("id,name\n" + "".join(f"{i},{n}\n" for i, n in rows)).encode())


def upload(gcs: GcsEmulator, bucket: str, name: str, data: bytes) -> int:
    blob = gcs.client().bucket(bucket).blob(name)
    blob.upload_from_string(data)
    stored = gcs.client().bucket(bucket).get_blob(name)
    assert stored is not None
    return int(stored.generation)


@pytest.fixture
def bucket(gcs_env: GcsEmulator, unique_name: str) -> str:
    gcs_env.client().create_bucket(unique_name)
    return unique_name


def people_catalog(folder: Path, pattern: str) -> Catalog:
    return write_catalog(
        folder,
        f"""
        pipelines:
          - {{name: people, source: {{uri: "{pattern}"}}, destination: {{table: people}}}}
        """,
    )


def gcs_settings(tmp_path: Path, gcs: GcsEmulator) -> Settings:
    return duckdb_settings(tmp_path, storage_emulator_host=gcs.endpoint, gcs_project="test-project")


def test_gcs_glob_loads_objects_with_their_generation(
    tmp_path: Path, gcs_env: GcsEmulator, bucket: str
) -> None:
    generation = upload(gcs_env, bucket, "raw/2026/a.csv.gz", csv_gz([(1, "a"), (2, "b")]))
    upload(gcs_env, bucket, "raw/2026/b.csv.gz", csv_gz([(3, "c")]))
    upload(gcs_env, bucket, "other/c.csv.gz", csv_gz([(9, "not mine")]))
    catalog = people_catalog(tmp_path, f"gs://{bucket}/raw/**.csv.gz")
    settings = gcs_settings(tmp_path, gcs_env)

    report = run(RunRequest("people"), settings, catalog)

    assert report.rows_loaded == 3
    rows = query(
        settings,
        "select _ferry_source_uri, _ferry_source_generation, count(*) from ferry.people "
        "group by all order by 1",
    )
    assert rows[0] == (f"gs://{bucket}/raw/2026/a.csv.gz", generation, 2)
    assert rows[1][0] == f"gs://{bucket}/raw/2026/b.csv.gz"


def test_generations_in_any_order_leave_the_newest(
    tmp_path: Path, gcs_env: GcsEmulator, bucket: str
) -> None:
    catalog = people_catalog(tmp_path, f"gs://{bucket}/raw/*.csv.gz")
    settings = gcs_settings(tmp_path, gcs_env)
    uri = f"gs://{bucket}/raw/a.csv.gz"
    old = upload(gcs_env, bucket, "raw/a.csv.gz", csv_gz([(1, "old"), (2, "old")]))
    first = run(RunRequest("people", source_uri=uri, generation=old), settings, catalog)
    assert first.rows_loaded == 2

    new = upload(gcs_env, bucket, "raw/a.csv.gz", csv_gz([(1, "new")]))
    assert new > old
    run(RunRequest("people", source_uri=uri, generation=new), settings, catalog)
    late_old = run(RunRequest("people", source_uri=uri, generation=old), settings, catalog)
    again = run(RunRequest("people", source_uri=uri, generation=new), settings, catalog)

    assert [f.status for f in late_old.files] == ["superseded"]
    assert [f.status for f in again.files] == ["already_loaded"]
    assert query(settings, "select id, name from ferry.people") == [(1, "new")]


def test_deleted_object_is_a_terminal_not_found(
    tmp_path: Path, gcs_env: GcsEmulator, bucket: str
) -> None:
    from core.errors import SourceNotFoundError

    catalog = people_catalog(tmp_path, f"gs://{bucket}/raw/*.csv")
    with pytest.raises(SourceNotFoundError, match=r"gone\.csv"):
        run(
            RunRequest("people", source_uri=f"gs://{bucket}/raw/gone.csv", generation=1),
            gcs_settings(tmp_path, gcs_env),
            catalog,
        )


def test_bigquery_destination_loads_and_stays_idempotent(
    tmp_path: Path,
    bigquery_env: BigQueryEmulator,
    unique_name: str,
) -> None:
    settings = Settings(
        destination="bigquery",
        bigquery_project=bigquery_env.project,
        bigquery_dataset=unique_name,
        bigquery_emulator_host=bigquery_env.endpoint,
        storage_emulator_host=None,
        data_dir=tmp_path / "data",
    )

    catalog = load_catalog(REPO / "examples" / "pipelines.yaml")
    first = run(RunRequest("orders"), settings, catalog)
    second = run(RunRequest("orders"), settings, catalog)

    client = bigquery_env.client()
    (row,) = client.query(
        f"select count(*) as n, count(distinct order_id) as distinct_keys "
        f"from `{bigquery_env.project}.{unique_name}.orders`"
    ).result()
    assert first.destination == "bigquery"
    assert row.n == row.distinct_keys == first.tables["orders"] > 0
    assert second.files_loaded == 0
    datasets = {d.dataset_id for d in client.list_datasets()}
    staging = sorted(d for d in datasets if d.startswith(f"{unique_name}_staging"))
    # the kept pipeline keeps one staging dataset for its next run; no run leaves its own
    assert len(staging) == 1 and kept_staging_pattern(unique_name).match(staging[0]), staging


# --- API pipelines --------------------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with serve() as server:
        yield server


def test_api_pipeline_resumes_its_cursor_on_a_cold_instance(tmp_path: Path, api: ApiServer) -> None:
    records: list[dict[str, Any]] = [
        {"ID": i, "updated_at": f"2026-11-{i:02d}T00:00:00Z", "v": i * 10} for i in range(1, 6)
    ]

    def page(request: Received) -> Reply:
        since = request.query.get("since", "")
        return Reply(body={"data": [r for r in records if r["updated_at"] >= since]})

    api.route("/items", page)
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: items
            source:
              kind: api
              base_url: "{api.base_url}"
              path: /items
              data_selector: data
              paginator: single_page
              incremental: {{cursor_path: updated_at, param: since, initial_value: "2026-01-01"}}
              allowed_hosts: ["127.0.0.1"]
            transform:
              - rename: {{ID: id}}
              - derive: {{double: "v * 2"}}
            destination: {{table: items, write_disposition: merge, primary_key: [id]}}
        """,
    )
    settings = duckdb_settings(tmp_path)
    first = run(RunRequest("items"), settings, catalog)
    records.append({"ID": 6, "updated_at": "2026-11-06T00:00:00Z", "v": 60})
    second = run(RunRequest("items"), settings, catalog)  # a new working dir: a cold instance

    assert first.rows_loaded == 5
    sent = [r.query.get("since") for r in api.requests_to("/items")]
    assert sent == ["2026-01-01", "2026-11-05T00:00:00Z"]
    assert second.rows_loaded == 1  # dlt drops the boundary record it already loaded
    assert query(settings, "select count(*), sum(double) from ferry.items") == [(6, 420)]
