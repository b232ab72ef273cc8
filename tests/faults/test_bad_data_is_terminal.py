"""Bad data is terminal, never a retry loop (issue 19): files missing a merge's key or
sequence column, columns named like dlt's or ferry's own, and ambiguous partition paths are
answered 422 `bad_data` naming the column, on a table's first load as on later ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.edges.server import create_app
from core.settings import Settings
from tests.helpers import count, duckdb_settings, write_catalog


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[tuple[Path, Settings, TestClient]]:
    folder = tmp_path / "lake"
    folder.mkdir()
    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: latest
            source: {{uri: "{folder}/merge/*.csv"}}
            destination:
              table: latest
              write_disposition: merge
              primary_key: [id]
              sequence: seq
          - name: plain
            source: {{uri: "{folder}/plain/*.csv"}}
            destination: {{table: plain}}
          - name: parted
            source:
              uri: "{folder}/parted/**/*.csv"
              partition_columns: {{dt: date}}
            destination: {{table: parted}}
        """,
    )
    settings = duckdb_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        yield folder, settings, client


def put(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def post(client: TestClient, pipeline: str, source: str) -> tuple[int, dict[str, Any]]:
    response = client.post("/runs", json={"pipeline": pipeline, "source": source})
    body: dict[str, Any] = response.json()
    return response.status_code, body


@pytest.mark.parametrize(
    ("header", "missing"), [("id,name\n1,a\n", "seq"), ("seq,name\n1,a\n", "id")]
)
def test_a_merge_file_without_its_key_or_sequence_column_is_bad_data(
    lake: tuple[Path, Settings, TestClient], header: str, missing: str
) -> None:
    folder, settings, client = lake
    good = put(folder, "merge/good.csv", "id,seq,name\n1,1,a\n")
    assert post(client, "latest", good)[0] == 200

    status, body = post(client, "latest", put(folder, "merge/bad.csv", header))

    assert status == 422, body
    assert body["error"]["code"] == "bad_data"
    assert f"no column '{missing}'" in body["error"]["message"]
    assert count(settings, "latest") == 1


@pytest.mark.parametrize("column", ["_dlt_load_id", "_dlt_id", "_ferry_source_uri", "_DLT_ID"])
def test_columns_named_like_dlt_or_ferry_are_refused_on_first_and_later_loads(
    lake: tuple[Path, Settings, TestClient], column: str
) -> None:
    folder, settings, client = lake
    first = put(folder, "plain/first.csv", f"id,{column}\n1,17\n")

    before, first_body = post(client, "plain", first)
    assert post(client, "plain", put(folder, "plain/ok.csv", "id\n2\n"))[0] == 200
    after, later_body = post(client, "plain", put(folder, "plain/later.csv", f"id,{column}\n3,x\n"))

    for status, body in ((before, first_body), (after, later_body)):
        assert status == 422, body
        assert body["error"]["code"] == "bad_data"
        assert f"column '{column}'" in body["error"]["message"]
    assert count(settings, "plain") == 1


def test_two_segments_of_a_partition_column_are_refused(
    lake: tuple[Path, Settings, TestClient],
) -> None:
    folder, settings, client = lake
    path = put(folder, "parted/dt=2026-01-01/late/dt=2026-02-02/a.csv", "id\n1\n")

    status, body = post(client, "parted", path)

    assert status == 422, body
    assert body["error"]["code"] == "bad_data"
    assert "two 'dt=' folders" in body["error"]["message"]
    assert count(settings, "parted") == 0
