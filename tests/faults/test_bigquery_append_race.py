"""Two instances given one new object at once on BigQuery (a redelivery racing the first
delivery): with the writer lease set, the append fast path reads the ledger again under the
table's writer, so the run that lost the race fails retriably instead of appending the
object a second time, and its retry skips it.

The two runs are called in one process without ferry's object locks or group commit, which
is what two instances are to each other; the second run is started from the first one's
extract (a hook at `after_first_batch`), so the interleaving is forced, not hoped for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.run.catalog import load_catalog
from app.run.runner import RunRequest, run
from core import failpoints
from core.errors import DestinationUnavailableError
from core.settings import Settings
from tests.emulators import BigQueryEmulator, GcsEmulator
from tests.helpers import write_catalog

ROWS = 30


def test_a_new_object_loaded_by_two_instances_at_once_lands_once(
    tmp_path: Path,
    bigquery_env: BigQueryEmulator,
    gcs_emulator: GcsEmulator,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: str,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    gcs_emulator.client().create_bucket(unique_name)
    (tmp_path / "in").mkdir()
    body = "".join(f"{i},name{i}\n" for i in range(ROWS))
    (tmp_path / "in" / "events.csv").write_text("id,name\n" + body, encoding="utf-8")
    write_catalog(
        tmp_path,
        "pipelines:\n"
        '  - {name: events, source: {uri: "in/events.csv"}, destination: {table: events}}\n',
    )
    catalog = load_catalog(tmp_path / "pipelines.yaml")
    settings = Settings(
        destination="bigquery",
        bigquery_project=bigquery_env.project,
        bigquery_dataset=unique_name,
        bigquery_emulator_host=bigquery_env.endpoint,
        storage_emulator_host=gcs_emulator.endpoint,
        writer_lease_prefix=f"gs://{unique_name}/leases",
        data_dir=tmp_path / "data",
    )
    other_instance: list[str] = []

    def the_other_instance_loads_it_meanwhile() -> None:
        if not other_instance:
            other_instance.append("started")
            report = run(RunRequest("events"), settings, catalog)
            other_instance.append(report.status)

    with (
        failpoints.hooked("after_first_batch", the_other_instance_loads_it_meanwhile),
        pytest.raises(DestinationUnavailableError) as lost,
    ):
        run(RunRequest("events"), settings, catalog)

    assert other_instance == ["started", "succeeded"]
    assert lost.value.retriable
    retried = run(RunRequest("events"), settings, catalog)  # what a nack's redelivery does
    assert retried.status == "skipped"
    client = bigquery_env.client()
    rows = list(
        client.query(
            f"SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids "
            f"FROM `{bigquery_env.project}.{unique_name}.events`"
        ).result()
    )
    assert (rows[0]["n"], rows[0]["ids"]) == (ROWS, ROWS)
