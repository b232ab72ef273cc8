"""Concurrent first loads into a new BigQuery dataset (the emulator): the runs that lose the race
to create it get 409 Already Exists. Before: terminal `destination_rejected`, so a push was
dead-lettered (acked and lost). Now: retriable, and the retry loads the rows exactly once.

The race is real (threads released together), so a given round may not hit it; what is
asserted holds either way: no run fails terminally, and after retries every row is there once.
"""

from __future__ import annotations

import threading
from pathlib import Path

from app.run.catalog import Catalog, load_catalog
from app.run.runner import RunRequest, run
from core.errors import FerryError, outcome_of
from core.settings import Settings
from tests.emulators import BigQueryEmulator
from tests.helpers import write_catalog

PIPELINES = [f"feed{n}" for n in range(4)]
ROUNDS = 2
"""New datasets raced for: each round hits the race about one time in three."""


def test_concurrent_first_loads_into_a_new_dataset_are_never_terminal(
    tmp_path: Path,
    bigquery_env: BigQueryEmulator,
    unique_name: str,
) -> None:
    (tmp_path / "in").mkdir()
    for number, name in enumerate(PIPELINES):
        rows = "".join(f"{number * 10 + i},{name}\n" for i in range(3))
        (tmp_path / "in" / f"{name}.csv").write_text("id,name\n" + rows, encoding="utf-8")
    write_catalog(
        tmp_path,
        "pipelines:\n"
        + "".join(
            f'  - {{name: {name}, source: {{uri: "in/{name}.csv"}}, '
            "destination: {table: feeds, write_disposition: merge, primary_key: [id]}}\n"
            for name in PIPELINES
        ),
    )
    catalog = load_catalog(tmp_path / "pipelines.yaml")
    for attempt in range(ROUNDS):
        dataset = f"{unique_name}_{attempt}"
        settings = Settings(
            destination="bigquery",
            bigquery_project=bigquery_env.project,
            bigquery_dataset=dataset,
            bigquery_emulator_host=bigquery_env.endpoint,
            storage_emulator_host=None,
            data_dir=tmp_path / "data",
        )
        failures = race_first_loads(settings, catalog)

        terminal = {name: e.to_dict() for name, e in failures.items() if outcome_of(e).push_ack}
        assert terminal == {}, "a lost race is retriable: acking it would lose the rows"
        for name in failures:  # what Pub/Sub or the orchestrator does with a retriable failure
            run(RunRequest(name), settings, catalog)

        (row,) = (
            bigquery_env.client()
            .query(
                f"select count(*) as n, count(distinct id) as ids "
                f"from `{bigquery_env.project}.{dataset}.feeds`"
            )
            .result()
        )
        assert (row.n, row.ids) == (3 * len(PIPELINES), 3 * len(PIPELINES))


def race_first_loads(settings: Settings, catalog: Catalog) -> dict[str, FerryError]:
    """Every pipeline's first run, released together; the errors of those that failed."""
    start = threading.Barrier(len(PIPELINES))
    failures: dict[str, FerryError] = {}

    def first_load(name: str) -> None:
        start.wait()
        try:
            run(RunRequest(name), settings, catalog)
        except FerryError as error:
            failures[name] = error

    threads = [threading.Thread(target=first_load, args=(name,)) for name in PIPELINES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures
