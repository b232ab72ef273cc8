"""What a warm run costs on BigQuery, counted by API through bqsim (no added latency), and the
rows it leaves: a merge's staged tables are replaced by their load jobs (no TRUNCATE), and the
load is marked complete by a streaming insert (no `INSERT INTO _dlt_loads` job), and the
ledger rows are streamed too (no staged ledger table, no MERGE into `_ferry_objects`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import requests

from tests.bqsim import ZERO_LATENCY, run_bqsim
from tests.emulators import BigQueryEmulator
from tests.service_process import run_service

PIPELINE = """
pipelines:
  - name: people
    source: {{uri: "{folder}/*.csv", columns: {{id: int64}}}}
    destination: {{table: people, write_disposition: merge, primary_key: [id]}}
"""
POLLS = "jobs.get"
"""How often a load job is looked at depends on the machine's speed: not counted."""


def test_a_warm_merge_run_is_one_read_one_merge_and_leaves_each_key_once(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, unique_name: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(PIPELINE.format(folder=folder), encoding="utf-8")
    with run_bqsim(bigquery_emulator, {"latency_ms": ZERO_LATENCY}, tmp_path) as proxy:
        env = {
            "FERRY_PIPELINES_FILE": str(pipelines),
            "FERRY_DATA_DIR": str(tmp_path / "data"),
            "FERRY_BIGQUERY_PROJECT": bigquery_emulator.project,
            "FERRY_BIGQUERY_DATASET": unique_name,
            "FERRY_RUN_LOG": "false",
            "BIGQUERY_EMULATOR_HOST": proxy.endpoint,
        }
        with run_service(env, tmp_path / "service.log") as service:

            def run_with(name: str, rows: dict[int, str]) -> Counter[str]:
                text = "id,name\n" + "".join(f"{key},{value}\n" for key, value in rows.items())
                (folder / name).write_text(text, encoding="utf-8")
                before = Counter(proxy.stats()["counters"])
                answer = requests.post(
                    f"{service.base_url}/runs", json={"pipeline": "people"}, timeout=300
                )
                assert answer.status_code == 200, answer.text
                calls = Counter(proxy.stats()["counters"]) - before
                del calls[POLLS]
                return calls

            run_with("a.csv", {1: "a", 2: "a"})
            run_with("b.csv", {1: "b", 3: "b"})  # the staged tables now hold b's rows
            warm = run_with("c.csv", {2: "c", 4: "c"})

    result = bigquery_emulator.client().query(
        f"select id, name from `{bigquery_emulator.project}.{unique_name}.people` order by id"
    )
    assert [(row.id, row.name) for row in result.result()] == [
        (1, "b"),
        (2, "c"),
        (3, "b"),
        (4, "c"),
    ], "no staged row of an earlier run merged again"
    assert warm == Counter(
        {
            "jobs.query": 2,  # the ledger read, the data table's merge
            "jobs.insert(upload)": 1,  # the staged data rows: one load job
            "jobs.insert(upload-bytes)": 1,
            # the proxy's name for `tabledata.insertAll`: the ledger rows, `_dlt_loads`
            "tables.patch": 2,
        }
    ), "no TRUNCATE of the staged tables, no INSERT INTO _dlt_loads, no merge of the ledger"


APPEND = """
pipelines:
  - name: events
    source: {{uri: "{folder}/*.csv", columns: {{id: int64}}}}
    destination: {{table: events}}
"""


def test_a_fresh_pipeline_appending_new_objects_sets_up_no_staging_dataset(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, unique_name: str
) -> None:
    """A new instance's first append (a fresh dlt pipeline, the table and `_ferry_objects`
    already there): nothing is staged, so no staging dataset is made or migrated; a later
    run that does stage (a newer generation of an object replaces its rows) still works, and
    every row is there once."""
    folder = tmp_path / "in"
    folder.mkdir()
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(APPEND.format(folder=folder), encoding="utf-8")

    def write(name: str, keys: range) -> None:
        text = "id,name\n" + "".join(f"{key},{name}\n" for key in keys)
        (folder / name).write_text(text, encoding="utf-8")

    with run_bqsim(bigquery_emulator, {"latency_ms": ZERO_LATENCY}, tmp_path) as proxy:
        env = {
            "FERRY_PIPELINES_FILE": str(pipelines),
            "FERRY_BIGQUERY_PROJECT": bigquery_emulator.project,
            "FERRY_BIGQUERY_DATASET": unique_name,
            "FERRY_RUN_LOG": "false",
            "BIGQUERY_EMULATOR_HOST": proxy.endpoint,
        }

        def run_once(instance: str) -> Counter[str]:
            with run_service(
                env | {"FERRY_DATA_DIR": str(tmp_path / instance)}, tmp_path / f"{instance}.log"
            ) as service:
                before = Counter(proxy.stats()["counters"])
                answer = requests.post(
                    f"{service.base_url}/runs", json={"pipeline": "events"}, timeout=300
                )
                assert answer.status_code == 200, answer.text
                return Counter(proxy.stats()["counters"]) - before

        write("a.csv", range(0, 3))
        run_once("first")  # creates the table and `_ferry_objects`
        write("b.csv", range(3, 6))
        fresh = run_once("second")
        write("a.csv", range(10, 12))  # a newer generation: its rows replace a's
        run_once("third")

    assert fresh["datasets.insert"] == 0, "no staging dataset made for an append"
    result = bigquery_emulator.client().query(
        f"select id from `{bigquery_emulator.project}.{unique_name}.events` order by id"
    )
    assert [row.id for row in result.result()] == [3, 4, 5, 10, 11]
