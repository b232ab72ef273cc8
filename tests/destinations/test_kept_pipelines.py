"""A process keeps a run's dlt pipeline for its next run of the same pipeline (warm pushes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.destinations.pipeline import (
    KEPT_IN_ALL,
    KEPT_PER_PIPELINE,
    kept_pipeline_for,
    make_destination,
)
from app.destinations.staging import staging_pattern
from app.run.request import new_run_id
from app.run.runner import RunRequest, run
from core.errors import BadDataError
from tests.helpers import duckdb_settings, query, write_catalog

PIPELINE = """
pipelines:
  - name: orders
    source:
      uri: data/*.csv
      columns: {id: int64, amount: float64}
    destination:
      table: orders
      write_disposition: {disposition}
      primary_key: [id]
"""


def write(path: Path, first_id: int, rows: int) -> None:
    lines = "".join(f"{first_id + i},{i * 1.5}\n" for i in range(rows))
    path.write_text("id,amount\n" + lines, encoding="utf-8")


def working_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "data" / "runs").iterdir())


@pytest.mark.parametrize("disposition", ["append", "merge"])
def test_pushes_in_one_process_reuse_one_working_dir_and_load_each_object_once(
    tmp_path: Path, disposition: str
) -> None:
    (tmp_path / "data").mkdir()
    catalog = write_catalog(tmp_path, PIPELINE.replace("{disposition}", disposition))
    settings = duckdb_settings(tmp_path)
    for index in range(5):
        write(tmp_path / "data" / f"part-{index}.csv", index * 100, 10)
        report = run(RunRequest("orders", source_uri=f"data/part-{index}.csv"), settings, catalog)
        assert report.rows_loaded == 10
    again = run(RunRequest("orders", source_uri="data/part-0.csv"), settings, catalog)

    assert again.rows_loaded == 0 and again.to_dict()["files_skipped"] == 1
    rows = query(settings, "select count(*), count(distinct id), sum(amount) from ferry.orders")
    assert rows == [(50, 50, 5 * sum(i * 1.5 for i in range(10)))]
    (kept,) = working_dirs(tmp_path)
    # completed load packages are not left to pile up in the kept working dir
    assert not [p for p in kept.rglob("loaded/*") if p.is_dir()]
    staging = query(
        settings, "select count(*) from information_schema.schemata where schema_name like '%stag%'"
    )
    assert staging == [(0,)]


def test_a_kept_pipeline_stages_under_the_run_now_using_it(tmp_path: Path) -> None:
    settings = duckdb_settings(tmp_path)
    first_id, second_id = new_run_id(), new_run_id()
    with kept_pipeline_for("orders", settings, first_id) as first:
        assert first.fresh
    with kept_pipeline_for("orders", settings, second_id) as second:
        assert not second.fresh and second.pipeline is first.pipeline
        with second.pipeline.sql_client() as client, client.with_staging_dataset():
            staging = client.dataset_name
    # the sweep dates a staging dataset by the run id in its name
    match = staging_pattern(settings.dataset_name).match(staging)
    assert match is not None and second_id.lower().startswith(match[1])
    assert second_id.split("-")[-1] in staging


def test_a_failed_run_gives_up_its_working_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    catalog = write_catalog(tmp_path, PIPELINE.replace("{disposition}", "append"))
    settings = duckdb_settings(tmp_path)
    write(tmp_path / "data" / "good.csv", 0, 3)
    run(RunRequest("orders", source_uri="data/good.csv"), settings, catalog)
    (tmp_path / "data" / "bad.csv").write_text("id,amount\n1,not-a-number\n", encoding="utf-8")

    with pytest.raises(BadDataError):
        run(RunRequest("orders", source_uri="data/bad.csv"), settings, catalog)

    assert working_dirs(tmp_path) == []
    write(tmp_path / "data" / "later.csv", 10, 4)
    assert (
        run(RunRequest("orders", source_uri="data/later.csv"), settings, catalog).rows_loaded == 4
    )
    assert query(settings, "select count(*) from ferry.orders") == [(7,)]


def test_concurrent_runs_keep_no_more_than_the_bound(tmp_path: Path) -> None:
    settings = duckdb_settings(tmp_path)
    with (
        kept_pipeline_for("orders", settings, new_run_id()),
        kept_pipeline_for("orders", settings, new_run_id()),
        kept_pipeline_for("orders", settings, new_run_id()),
    ):
        assert len(working_dirs(tmp_path)) == 3
    assert len(working_dirs(tmp_path)) == KEPT_PER_PIPELINE


def test_cached_capabilities_are_dlts_own_and_not_shared(tmp_path: Path) -> None:
    import dlt

    settings = duckdb_settings(tmp_path)
    cached = make_destination(settings, new_run_id())
    plain = dlt.destinations.duckdb(credentials=str(tmp_path / "x.duckdb"))
    first = cached.capabilities()
    assert dict(first) == dict(plain.capabilities())
    first.preferred_loader_file_format = "jsonl"  # dlt adjusts what it is handed
    again = make_destination(settings, new_run_id()).capabilities()
    assert again.preferred_loader_file_format == plain.capabilities().preferred_loader_file_format


def test_the_process_keeps_a_bounded_number_of_pipelines_in_all(tmp_path: Path) -> None:
    settings = duckdb_settings(tmp_path)
    for index in range(KEPT_IN_ALL + 5):
        with kept_pipeline_for(f"pipeline_{index}", settings, new_run_id()):
            pass
    assert len(working_dirs(tmp_path)) == KEPT_IN_ALL
    # the most recently used are the ones kept
    with kept_pipeline_for(f"pipeline_{KEPT_IN_ALL + 4}", settings, new_run_id()) as last:
        assert not last.fresh
    with kept_pipeline_for("pipeline_0", settings, new_run_id()) as first:
        assert first.fresh
