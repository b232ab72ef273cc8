"""Rows streamed into a BigQuery table (`tabledata.insertAll`): one REST call, no job and no
DML, so no place in the table's DML queue. The run log, `_dlt_loads`, the object ledger and
the model records all go in this way (destination.append_rows, models.append_rows)."""

from __future__ import annotations

from typing import Any

STREAM_DEADLINE_SECONDS = 60.0
"""A streaming insert is retried this long at most, not the client's default ten minutes:
its caller fails retriably (or falls back) instead of hanging a run."""


def stream_rows(client: Any, qualified: str, rows: list[dict[str, Any]], ids: list[str]) -> bool:
    """Stream `rows` into the table `qualified` (`project.dataset.table`) through `client`, a
    dlt BigQuery SQL client; `ids` are BigQuery's best-effort de-duplication ids. False when
    the table does not exist yet; rows it refused raise."""
    from google.api_core.exceptions import NotFound
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    try:
        errors = client.native_connection.insert_rows_json(
            qualified,
            rows,
            row_ids=ids,
            retry=DEFAULT_RETRY.with_timeout(STREAM_DEADLINE_SECONDS),
            timeout=STREAM_DEADLINE_SECONDS / 2,
        )
    except NotFound:
        return False
    if errors:
        raise RuntimeError(f"streaming insert into {qualified} failed: {errors}")
    return True
