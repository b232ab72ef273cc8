"""Sweeps staging datasets that killed runs left behind.

Every run (and every idempotency write) merges through a staging dataset no other run uses at
the same time: its own, `<dataset>_staging_<run id>`, dropped when the run ends, or on BigQuery
the kept pipeline's, `<dataset>_staging_k<hex>`, kept for its next run and swept once its
tables have not changed for `staging_max_age_hours`. A SIGKILL or an out-of-memory kill
skips that drop: on BigQuery the leftover holds a copy of source rows. The run id starts with
the run's start time, so a leftover older than `staging_max_age_hours` cannot belong to a
run still going, and is dropped: at the start of a run (at most once per interval per
process) and by `main.py gc`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.destinations.pipeline import (
    KEPT_STAGING_PREFIX,
    destination_lock,
    run_pipeline_for,
    sql_client_of,
)
from app.destinations.registry import engine_for
from core.errors import classify
from core.settings import Settings

log = logging.getLogger("ferry.staging")

SWEEP_INTERVAL_SECONDS = 900.0
"""A long-lived instance sweeps at most this often (one dataset listing per sweep)."""

_last_sweep: dict[tuple[str, str], float] = {}
_lock = threading.Lock()


def staging_pattern(dataset: str) -> re.Pattern[str]:
    """`<dataset>_staging_[<prefix>_]<yyyymmddThhmmss>_<8 hex>`, as staging_token spells it."""
    return re.compile(
        rf"^{re.escape(dataset.lower())}_staging_(?:[a-z]+_)*(\d{{8}}t\d{{6}})_[0-9a-f]{{8}}$"
    )


def stale_staging(
    names: Iterable[str], dataset: str, now: datetime, max_age: timedelta
) -> list[str]:
    """The names that are run staging datasets of `dataset` started before `now - max_age`.

    `now` is UTC, like the timestamp in run ids.
    """
    pattern = staging_pattern(dataset)
    stale = []
    for name in names:
        match = pattern.match(name.lower())
        if match is None:
            continue
        started = datetime.strptime(match[1].upper(), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        if now - started > max_age:
            stale.append(name)
    return sorted(stale)


def kept_staging_pattern(dataset: str) -> re.Pattern[str]:
    """`<dataset>_staging_k<12 hex>`: a kept pipeline's staging dataset (pipeline.py)."""
    return re.compile(
        rf"^{re.escape(dataset.lower())}_staging_{KEPT_STAGING_PREFIX}[0-9a-f]{{12}}$"
    )


def stale_kept_staging(
    names: Iterable[str],
    dataset: str,
    last_used: Callable[[str], datetime | None],
    now: datetime,
    max_age: timedelta,
) -> list[str]:
    """The names that are kept staging datasets of `dataset` whose tables last changed
    before `now - max_age` (`last_used`: None for a dataset already gone). UTC times."""
    kept = kept_staging_pattern(dataset)
    stale = []
    for name in names:
        if kept.match(name.lower()):
            used = last_used(name)
            if used is not None and now - used > max_age:
                stale.append(name)
    return sorted(stale)


def sweep_stale_staging(pipeline: Any, settings: Settings) -> list[str]:
    """Drop the stale staging datasets of the pipeline's destination; their names.

    A run's own staging dataset is dated by the run id in its name; a kept pipeline's (its
    name says nothing about time) by when its tables last changed: each run that stages
    truncates and fills them, so tables untouched for `staging_max_age_hours` belong to a
    pipeline given up or an instance gone. The caller holds the destination lock (DuckDB).
    """
    destination = engine_for(settings).destination
    max_age = timedelta(hours=settings.staging_max_age_hours)
    with sql_client_of(pipeline) as client:
        names = destination.list_datasets(client, settings)
        stale = stale_staging(names, settings.dataset_name, datetime.now(UTC), max_age)
        stale += stale_kept_staging(
            names,
            settings.dataset_name,
            lambda name: destination.last_modified(client, settings, name),
            datetime.now(UTC),
            max_age,
        )
        for name in stale:
            destination.drop_dataset(client, settings, name)
    if stale:
        log.warning(
            "dropped %d staging dataset(s) left by killed runs: %s",
            len(stale),
            ", ".join(stale),
            extra={"event": "staging_swept", "datasets": stale},
        )
    return stale


def sweep_if_due(pipeline: Any, settings: Settings) -> None:
    """Best effort, throttled: a failed sweep never fails the run that attempted it."""
    key = (settings.destination_kind, settings.dataset_name)
    now = time.monotonic()
    with _lock:
        last = _last_sweep.get(key)
        if last is not None and now - last < SWEEP_INTERVAL_SECONDS:
            return
        _last_sweep[key] = now
    try:
        sweep_stale_staging(pipeline, settings)
    except Exception as error:
        log.warning("could not sweep stale staging datasets: %s", error)


def sweep_now(settings: Settings) -> list[str]:
    """`main.py gc`: sweep once, unthrottled; the names dropped."""
    try:
        with (
            run_pipeline_for("_gc", settings, f"gc-{time.time_ns()}") as pipeline,
            destination_lock(settings),
        ):
            return sweep_stale_staging(pipeline, settings)
    except Exception as error:
        raise classify(error) from error
