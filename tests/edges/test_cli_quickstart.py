"""The `ferry` command as a new user meets it (issue 22): load your own file, init a pipelines
file, validate a file by name, the schema, --help, serve's address, the terminal summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from app.edges import cli
from tests.helpers import REPO

ORDERS = REPO / "examples" / "data" / "orders"


def ferry(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python main.py ARGS` from `cwd`, with a clean FERRY_* environment."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "CLOUD_RUN_", "BIGQUERY_", "STORAGE_", "PORT"))
    }
    environment |= {"FERRY_LOG_FORMAT": "json", **env}
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def rows(cwd: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(cwd / ".data" / "local.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_load_a_glob_without_yaml_then_again_changes_nothing(tmp_path: Path) -> None:
    shutil.copytree(ORDERS, tmp_path / "orders")
    files = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "orders").iterdir())
    first = ferry(["load", *files, "--table", "orders"], tmp_path)  # a glob the shell expanded
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["tables"] == {"orders": 240} and report["rows_filtered"] == 0
    assert rows(tmp_path, "select count(distinct _ferry_source_uri) from ferry.orders") == [(2,)]
    again = ferry(["load", "orders/*.csv", "--table", "orders"], tmp_path)  # a quoted glob
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["files_skipped"] == 2
    assert rows(tmp_path, "select count(*) from ferry.orders") == [(240,)]


def test_load_refuses_a_bad_table_name_in_one_sentence(tmp_path: Path) -> None:
    result = ferry(["load", str(ORDERS), "--table", "my table"], tmp_path)
    assert result.returncode == 2
    assert "--table: 'my table' is not a valid identifier" in result.stderr


def test_init_writes_a_file_that_validates_and_runs(tmp_path: Path) -> None:
    shutil.copytree(ORDERS, tmp_path / "orders")
    made = ferry(["init", "orders/orders-2026-11-01.csv", "--table", "orders"], tmp_path)
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "pipelines.yaml").read_text()
    assert "Quantity: int64" in text and "UnitPrice: float64" in text
    assert "# append:" in text and "# merge:" in text  # the dispositions explained
    assert 'uri: "orders/orders-2026-11-01.csv"' in text  # relative to the file it wrote
    checked = ferry(["validate"], tmp_path)  # ./pipelines.yaml is the default
    assert checked.stdout == "orders: files -> orders (append)\n", checked.stderr
    ran = ferry(["run", "orders"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["tables"] == {"orders": 120}
    again = ferry(["init", "orders/orders-2026-11-01.csv"], tmp_path)
    assert again.returncode == 2 and "exists already" in again.stderr


def test_validate_takes_the_file_as_argument_or_option_from_anywhere(tmp_path: Path) -> None:
    demo = REPO / "examples" / "pipelines.yaml"
    by_argument = ferry(["validate", str(demo)], tmp_path)
    assert by_argument.returncode == 0, by_argument.stderr
    assert "orders: files -> orders (merge)" in by_argument.stdout
    by_option = ferry(["validate", "--pipelines", str(demo)], tmp_path)
    assert by_option.stdout == by_argument.stdout
    # no file named and no ./pipelines.yaml: the installation's demo file, whatever the cwd
    assert ferry(["validate"], tmp_path).stdout == by_argument.stdout


def test_validate_reports_every_problem_with_the_nearest_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "pipelines:\n"
        "  - name: p\n"
        "    source: {uri: a.csv}\n"
        "    transform: [{rename: {a: b}}, {fitler: 'x > 0'}]\n"
        "    destination: {table: t, write_disposition: merge}\n"
        "models:\n"
        "  - {name: m, sql: 'SELECT * FROM nowhere'}\n"
    )
    result = ferry(["validate", str(bad)], tmp_path, FERRY_LOG_FORMAT="text")
    assert result.returncode == 2
    assert "unknown transform step 'fitler' at step 2; did you mean 'filter'?" in result.stderr
    assert "needs primary_key or merge_key" in result.stderr
    assert "model 'm': reads table 'nowhere'" in result.stderr
    assert "Traceback" not in result.stderr


def test_schema_is_printed_and_describes_every_field(tmp_path: Path) -> None:
    result = ferry(["schema"], tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["title"] == "ferry pipelines file"
    definitions = {**schema["$defs"], "PipelinesFile": schema}
    undescribed = [
        f"{name}.{field}"
        for name, definition in definitions.items()
        for field, body in definition.get("properties", {}).items()
        if not body.get("description")
    ]
    assert undescribed == []
    assert len(definitions) > 20


def test_help_names_the_ferry_command_and_the_defaults(tmp_path: Path) -> None:
    top = ferry(["--help"], tmp_path).stdout
    assert top.startswith("usage: ferry")
    for command in ("run", "load", "init", "validate", "schema", "build", "serve", "drain"):
        assert command in top
    serve = ferry(["serve", "--help"], tmp_path).stdout
    assert "--port" in serve and "127.0.0.1" in serve and "$PORT" in serve
    run_help = " ".join(ferry(["run", "--help"], tmp_path).stdout.split())
    assert "A relative path is relative to the current directory" in run_help


@pytest.mark.parametrize(
    ("args", "port_env", "expected"),
    [
        (["serve"], None, ("127.0.0.1", 8080)),  # a laptop: this machine only
        (["serve"], "9000", ("0.0.0.0", 9000)),  # Cloud Run sets $PORT
        (["serve", "--host", "::1", "--port", "7000"], "9000", ("::1", 7000)),
    ],
)
def test_serve_binds_locally_unless_cloud_run_sets_the_port(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: list[str],
    port_env: str | None,
    expected: tuple[str, int],
) -> None:
    import app.edges.server

    bound: list[tuple[str, int]] = []
    monkeypatch.setattr(
        app.edges.server, "serve", lambda host, port, settings: bound.append((host, port))
    )
    if port_env is None:
        monkeypatch.delenv("PORT", raising=False)
    else:
        monkeypatch.setenv("PORT", port_env)
    monkeypatch.setenv("FERRY_DATA_DIR", str(tmp_path))
    assert cli.main(args) == 0
    assert bound == [expected]


def test_a_terminal_gets_a_summary_saying_where_the_data_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.csv").write_text("id,qty\n1,5\n2,0\n3,7\n", encoding="utf-8")
    (tmp_path / "p.yaml").write_text(
        "pipelines:\n"
        "  - {name: p, source: {uri: in.csv}, transform: [{filter: 'qty > 0'}],\n"
        "     destination: {table: t}}\n"
    )
    for name in [k for k in os.environ if k.startswith(("FERRY_", "BIGQUERY_", "STORAGE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FERRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli.main(["run", "p", "--pipelines", str(tmp_path / "p.yaml")]) == 0
    out = capsys.readouterr().out
    assert "rows:  3 read, 1 filtered out, 0 rejected, 2 loaded" in out
    assert f"DuckDB file {tmp_path / 'data' / 'local.duckdb'}" in out
    assert "select * from ferry.t limit 10" in out
    assert cli.main(["run", "p", "--pipelines", str(tmp_path / "p.yaml"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)  # --json: the report even on a terminal
    assert again["status"] == "skipped" and again["files_skipped"] == 1


def test_load_and_init_a_gs_object_into_bigquery(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gcs_env: Any,
    bigquery_env: Any,
    unique_name: str,
) -> None:
    """`ferry load gs://... --table t --destination bigquery`, on the emulators."""
    bucket = gcs_env.client().create_bucket(unique_name)
    bucket.blob("in/orders.csv").upload_from_filename(str(ORDERS / "orders-2026-11-01.csv"))
    for name in [k for k in os.environ if k.startswith("FERRY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FERRY_BIGQUERY_PROJECT", bigquery_env.project)
    monkeypatch.setenv("FERRY_BIGQUERY_DATASET", unique_name)
    monkeypatch.setenv("FERRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FERRY_RUN_LOG", "false")
    monkeypatch.chdir(tmp_path)
    uri = f"gs://{unique_name}/in/*.csv"
    assert cli.main(["load", uri, "--table", "orders", "--destination", "bigquery"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["destination"] == "bigquery" and report["tables"] == {"orders": 120}
    (row,) = (
        bigquery_env.client()
        .query(
            f"select count(distinct _ferry_source_uri) as n from "
            f"`{bigquery_env.project}.{unique_name}.orders`"
        )
        .result()
    )
    assert row.n == 1
    assert cli.main(["init", uri, "--output", "gs.yaml"]) == 0
    text = (tmp_path / "gs.yaml").read_text()
    assert f'uri: "{uri}"' in text and "Quantity: int64" in text
    capsys.readouterr()
    assert cli.main(["validate", "gs.yaml"]) == 0
    assert capsys.readouterr().out == "orders: files -> orders (append)\n"
