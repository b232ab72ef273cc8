"""Reports and runs tell the truth (issue 19): a failed run reports none of its files as
loaded; the service imports what runs need before it serves a run; a model can never be
named so that building it replaces a table a pipeline loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.edges.server import create_app
from app.run.catalog import load_catalog
from core.errors import ConfigError
from tests.helpers import REPO, count, duckdb_settings, write_catalog


def test_a_failed_run_reports_no_file_as_loaded(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "t1.csv").write_text("id\n1\n2\n", encoding="utf-8")
    (folder / "t2.csv").write_text("id\nnot-a-number\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: typed
            source: {{uri: "{folder}/*.csv", columns: {{id: int64}}}}
            destination: {{table: typed}}
        """,
    )
    settings = duckdb_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        response = client.post("/runs", json={"pipeline": "typed"})

    assert response.status_code == 422, response.text
    report = response.json()["report"]
    assert report["status"] == "failed"
    statuses = {f["uri"].rsplit("/", 1)[1]: f["status"] for f in report["files"]}
    assert statuses == {"t1.csv": "failed", "t2.csv": "failed"}
    assert report["files_loaded"] == 0
    assert count(settings, "typed") == 0


def test_the_service_imports_pandas_before_it_serves_a_run() -> None:
    """Concurrent first requests raced a lazy `import pandas` (dlt looks the half-imported
    module up in sys.modules). The import runs while the socket opens (not before: it would
    cost every cold start 0.2 s), and every request but /healthz waits until it is done."""
    code = (
        "import sys, tempfile, pathlib\n"
        "from fastapi.testclient import TestClient\n"
        "from app.edges.server import create_app\n"
        "from tests.helpers import duckdb_settings, write_catalog\n"
        "folder = pathlib.Path(tempfile.mkdtemp())\n"
        "write_catalog(folder, 'pipelines: []')\n"
        "client = TestClient(create_app(duckdb_settings(folder)))\n"  # no lifespan: no preload
        "assert client.get('/healthz').status_code == 200\n"
        "assert 'pandas' not in sys.modules\n"
        "client.get('/runs/none')\n"
        "print(hasattr(sys.modules.get('pandas'), 'DataFrame'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


@pytest.mark.parametrize("model", ["app_rows", "App_Rows", "app_rows__rejects"])
def test_a_model_named_like_a_loaded_table_is_refused_at_start(tmp_path: Path, model: str) -> None:
    """dlt writes the table `AppRows` as `app_rows`: a model `app_rows` would replace (drop)
    it on its first build. Names compare as the destination stores them."""
    path = tmp_path / "pipelines.yaml"
    path.write_text(
        f"""
pipelines:
  - name: rows
    source: {{uri: "in/*.csv"}}
    destination: {{table: AppRows}}
models:
  - {{name: {model}, sql: "SELECT 1 AS n FROM AppRows"}}
""",
        encoding="utf-8",
    )

    with pytest.raises(
        ConfigError, match=f"model '{model}'.*already loads a table of this name \\('AppRows'"
    ):
        load_catalog(path)


def test_a_cdc_run_reports_changes_apart_from_rows(tmp_path: Path) -> None:
    folder = tmp_path / "changes"
    folder.mkdir()
    (folder / "c1.csv").write_text(
        "id,seq,op,v\n1,1,u,a\n1,2,u,b\n2,1,u,c\n2,2,u,d\n3,1,u,e\n3,2,d,\n", encoding="utf-8"
    )
    write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: cdc
            source: {{uri: "{folder}/*.csv", columns: {{id: int64, seq: int64}}}}
            destination:
              table: accounts
              write_disposition: merge
              primary_key: [id]
              sequence: seq
              cdc: {{operation_column: op, delete_values: [d], deletes: hard}}
        """,
    )
    settings = duckdb_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        report = client.post("/runs", json={"pipeline": "cdc"}).json()

    assert report["status"] == "succeeded", report
    assert report["changes"] == {"applied": 6, "upserts": 5, "deletes": 1, "tombstones": 1}
    assert "accounts" not in report["tables"], "change rows are not table rows"
    assert count(settings, "accounts") == 2
