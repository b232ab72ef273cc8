"""BigQuery: Application Default Credentials in production, the local emulator in tests.

The same small function set as duckdb.py; app/destinations/pipeline.py picks one by
`settings.destination_kind`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.lineage import SOURCE_URI_COLUMN
from core.settings import Settings
from core.spec import DestinationSpec

SQL_TYPES = {"text": "STRING", "bigint": "INT64", "double": "FLOAT64", "timestamp": "TIMESTAMP"}

APPEND_UNDER_LOCK = False
"""No lock spans instances, so an object's rows are always merged on its URI."""


def make_destination(settings: Settings, staging_layout: str) -> Any:
    import dlt

    credentials = None
    if settings.bigquery_emulator_host:
        from google.oauth2.credentials import Credentials

        # the emulator: a static token dlt never refreshes, and no gzip load files
        credentials = Credentials(token="emulator")  # noqa: S106
        os.environ["DATA_WRITER__DISABLE_COMPRESSION"] = "true"
    # production: credentials=None means Application Default Credentials
    return dlt.destinations.bigquery(
        credentials=credentials,  # type: ignore[arg-type]
        project_id=settings.bigquery_project,
        location=settings.bigquery_location,
        staging_dataset_name_layout=staging_layout,
    )


@contextmanager
def lock(settings: Settings, timeout: float = 600.0) -> Iterator[None]:
    """No lock: each run stages into its own dataset, and BigQuery serialises DML itself."""
    yield


def list_datasets(client: Any, settings: Settings) -> list[str]:
    """Datasets of the project (`client`: the pipeline's dlt SQL client)."""
    bigquery = client.native_connection
    return [item.dataset_id for item in bigquery.list_datasets(settings.bigquery_project)]


def drop_dataset(client: Any, settings: Settings, name: str) -> None:
    client.native_connection.delete_dataset(
        f"{settings.bigquery_project}.{name}", delete_contents=True, not_found_ok=True
    )


def adapt(resource: Any, destination: DestinationSpec, *, lineage: bool) -> Any:
    """Partition and cluster; file loads cluster on the source URI by default, which keeps
    the per-object delete of a merge cheap."""
    from dlt.destinations.adapters import bigquery_adapter

    cluster = destination.cluster or ([SOURCE_URI_COLUMN] if lineage else [])
    bigquery_adapter(
        resource,
        partition=destination.partition,  # type: ignore[arg-type]
        cluster=cluster or None,  # type: ignore[arg-type]
    )
    return resource
