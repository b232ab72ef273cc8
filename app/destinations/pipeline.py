"""The dlt destination of the settings (its engine's, through the registry), and dlt
pipelines: one working dir per run, or one kept for this process's next run."""

from __future__ import annotations

import atexit
import copy
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.destinations.registry import engine_for
from core.settings import Settings

log = logging.getLogger("ferry.destination")


def make_destination(settings: Settings, run_id: str, kept_token: str | None = None) -> Any:
    """The dlt destination, with a staging dataset of this run's own, or of one kept pipeline.

    dlt merges through a staging dataset (`<dataset>_staging` by default). Two concurrent
    runs loading one table would truncate and fill the same staging table and lose rows, so
    each run stages into a dataset no other run uses at the same time: its own, dropped when
    the run ends, or (`kept_token`, destinations that keep staging) that of the kept pipeline
    it runs on, which serves one run at a time and outlives it.
    """
    token = KEPT_STAGING_PREFIX + kept_token if kept_token else staging_token(run_id)
    layout = "%s_staging_" + token
    destination = engine_for(settings).destination.make_destination(settings, layout)
    return _caching_capabilities(destination)


KEPT_STAGING_PREFIX = "k"
"""`<dataset>_staging_k<12 hex>`: a kept pipeline's staging dataset (staging.py sweeps these
by the age of their tables, not by a name)."""


def _caching_capabilities(destination: Any) -> Any:
    """dlt asks the destination for its capabilities about 20 times a run, and without a
    config each answer resolves the destination's whole configuration again (~5 ms, a fifth
    of a warm push). The answer depends on the destination's parameters and the schema's
    naming only, so this process works it out once for each. The staging dataset's name
    (new each run) is left out of the key: capabilities do not depend on it. dlt adjusts the
    object it gets (file formats), so each call gets a copy."""
    compute = destination.capabilities
    params = {
        k: v for k, v in destination.config_params.items() if k != "staging_dataset_name_layout"
    }
    destination_key = (type(destination), repr(sorted(params.items())))

    def capabilities(config: Any = None, naming: Any = None) -> Any:
        if config is not None:
            return compute(config, naming)
        key = (*destination_key, type(naming), getattr(naming, "max_length", None))
        known = _capabilities.get(key)
        if known is None:  # two threads may both work it out: same answer, no harm
            known = _capabilities[key] = compute(None, naming)
        return copy.copy(known)

    destination.capabilities = capabilities
    return destination


_capabilities: dict[tuple[Any, ...], Any] = {}


@contextmanager
def destination_lock(settings: Settings) -> Iterator[None]:
    """Held around every read or write of the destination (DuckDB: one writer at a time,
    waited for at most `duckdb_lock_wait_seconds`); the wait counts in `lock_wait`."""
    started = time.monotonic()
    entered = False
    try:
        with engine_for(settings).destination.lock(settings):
            entered = True
            _waited(time.monotonic() - started)
            yield
    finally:
        if not entered:  # gave up waiting
            _waited(time.monotonic() - started)


_waits = threading.local()


def _waited(seconds: float) -> None:
    _waits.seconds = getattr(_waits, "seconds", 0.0) + seconds


def lock_wait(*, reset: bool = False) -> float:
    """Seconds this thread waited for the destination lock since the last reset."""
    seconds = float(getattr(_waits, "seconds", 0.0))
    if reset:
        _waits.seconds = 0.0
    return seconds


def destination_writer(settings: Settings, table: str) -> AbstractContextManager[None]:
    """Held from a load's last check to its last commit into `table` (and its side tables):
    loads of one table never overlap, on any destination."""
    return engine_for(settings).destination.writer(settings, table)


def staging_token(run_id: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", run_id.lower())


def _route_dlt_logs_through_ours() -> None:
    """dlt installs its own stderr handler; send its records through ferry's JSON/text one."""
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.handlers.clear()
    dlt_logger.propagate = True
    dlt_logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _KnownHarmlessDltWarnings) for f in dlt_logger.filters):
        dlt_logger.addFilter(_KnownHarmlessDltWarnings())


class _KnownHarmlessDltWarnings(logging.Filter):
    """DuckDB keeps timestamptz at microseconds anyway; this warning repeats every load."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not support both timezone and precision" not in record.getMessage()


_staging_dropped: weakref.WeakSet[Any] = weakref.WeakSet()
_staging_kept: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()
"""Kept pipelines whose staging dataset is kept with them (destinations with KEEPS_STAGING),
and the endpoint a client reached when each was made."""
_sql_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_sql_clients_open: weakref.WeakSet[Any] = weakref.WeakSet()


@contextmanager
def sql_client_of(pipeline: Any) -> Iterator[Any]:
    """The pipeline's dlt SQL client, opened for the block. Made once per pipeline: each
    `pipeline.sql_client()` resolves dlt's whole destination configuration (~12 ms), and a
    run reads the ledger half a dozen times. A nested use gets a client of its own."""
    client = _sql_clients.get(pipeline)
    if client is None or client in _sql_clients_open:
        client = pipeline.sql_client()
        _sql_clients.setdefault(pipeline, client)
    _sql_clients_open.add(client)
    try:
        with client:
            yield client
    finally:
        _sql_clients_open.discard(client)


def drop_staging_dataset(pipeline: Any) -> None:
    """Drop the run's own staging dataset now (the caller holds the destination lock), if
    the run may have staged anything, so the pipeline's exit does not take the lock again.
    A kept pipeline's kept staging dataset stays for its next run."""
    if pipeline not in _staging_kept and _may_have_staged(pipeline):
        _drop_staging_dataset(pipeline)
    _staging_dropped.add(pipeline)


def _drop_staging_dataset(pipeline: Any) -> None:
    """Best effort: a staging dataset left by a killed run holds no visible data."""
    try:
        with sql_client_of(pipeline) as client, client.with_staging_dataset():
            if client.has_dataset():
                client.drop_dataset()
    except Exception as error:
        log.warning("could not drop staging dataset of %s: %s", pipeline.pipeline_name, error)


def _drop_kept_staging_dataset(name: str, client: Any) -> None:
    """The same for a kept staging dataset (BigQuery only), through a client opened by the
    caller, and without asking first whether it exists: the engine's drop takes a missing
    dataset in its stride and bounds its retries, where dlt's lookup retries a lost endpoint
    for a minute."""
    try:
        with client.with_staging_dataset():
            client.drop_dataset()
    except Exception as error:
        log.warning("could not drop staging dataset of %s: %s", name, error)
    finally:
        client.close_connection()


def _may_have_staged(pipeline: Any) -> bool:
    """dlt stages only merge tables and replace tables with a staging strategy: a run that
    appended (the DuckDB fast path, the run log) or only read skips the drop's round trip."""
    if not pipeline.default_schema_name:
        return False
    return any(
        table.get("write_disposition") in ("merge", "replace")
        for table in pipeline.default_schema.data_tables()
    )


def pipeline_name(pipeline: str) -> str:
    return "ferry_" + pipeline.replace("-", "_")


@contextmanager
def run_pipeline_for(pipeline: str, settings: Settings, run_id: str) -> Iterator[Any]:
    """A dlt pipeline in a fresh working dir, removed afterwards.

    dlt keeps extract/normalize files and state in its working dir; two concurrent runs of
    one pipeline must never share it (dlt #1102, #2218), so each run gets its own. State that
    must outlive the run (incremental cursors) is restored from the destination by dlt.
    """
    created, workdir = _new_pipeline(pipeline, settings, run_id)
    try:
        try:
            with engine_for(settings).destination.pipeline_config(settings):
                yield created
        finally:
            _drop_staging_if_left(created, settings)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class KeptPipeline:
    """A run's dlt pipeline from `kept_pipeline_for`; `fresh` is False when an earlier run of
    this process used it (its state and schema are then those that run left)."""

    pipeline: Any
    fresh: bool


KEPT_PER_PIPELINE = 2
"""Idle pipelines kept per (pipeline, settings): more than two concurrent runs of one
pipeline in one instance make new ones, dropped after their run."""

KEPT_IN_ALL = 16
"""Idle pipelines kept by the process in all: a process that sees many pipelines or settings
(a test worker, a drain over many pipelines) gives up the longest unused first."""

_idle: OrderedDict[tuple[str, str], list[tuple[Any, Path]]] = OrderedDict()
_idle_guard = threading.Lock()


@contextmanager
def kept_pipeline_for(pipeline: str, settings: Settings, run_id: str) -> Iterator[KeptPipeline]:
    """Like `run_pipeline_for`, but the pipeline and its working dir outlive the run and serve
    this process's next run of the same pipeline: a push to a warm instance skips dlt's set-up,
    the state and schema sync of a fresh working dir, and the state row that sync rewrote.

    Still one run per working dir at a time (dlt #1102, #2218): a pipeline is taken out of the
    idle list for its run. A run that fails gives its pipeline up, since its working dir may
    hold a half-made package.
    """
    key = (pipeline, settings.model_dump_json())
    with _idle_guard:
        idle = _idle.get(key)
        taken = idle.pop() if idle else None
        if idle == []:
            del _idle[key]
    fresh = taken is None
    keeps_staging = engine_for(settings).destination.KEEPS_STAGING
    if taken is not None:
        created, workdir = taken
    else:
        # BigQuery: a staging dataset of this pipeline's own, kept across its runs, saves
        # each run creating, checking, filling with tables and dropping one (10 calls, ~9 s)
        kept_token = uuid.uuid4().hex[:12] if keeps_staging else None
        created, workdir = _new_pipeline(pipeline, settings, run_id, kept_token)
        if keeps_staging:
            _staging_kept[created] = engine_for(settings).destination.client_endpoint()
    if not fresh and not keeps_staging:
        # staging named for this run: the sweep judges a staging dataset's age by the run id
        # in its name, and would take a kept pipeline's first run id for a killed run's
        created.destination = make_destination(settings, run_id)
        _sql_clients.pop(created, None)  # it named the old staging dataset
    _staging_dropped.discard(created)
    try:
        try:
            with engine_for(settings).destination.pipeline_config(settings):
                yield KeptPipeline(created, fresh)
        finally:
            _drop_staging_if_left(created, settings)
        _forget_completed_packages(created)
    except BaseException:
        engine_for(settings).destination.forget_known()
        _known_tables.clear()
        _give_up(created, workdir, settings)
        raise
    given_up = [(created, workdir)]
    with _idle_guard:
        idle = _idle.setdefault(key, [])
        _idle.move_to_end(key)
        if len(idle) < KEPT_PER_PIPELINE:
            idle.append((created, workdir))
            given_up = _beyond_the_bound()
    for pipeline_object, path in given_up:
        _give_up(pipeline_object, path, settings)


KNOWN_TABLE_SECONDS = 600.0
"""How long this process trusts that a table it saw exists (forgotten when a run fails)."""

_known_tables: dict[tuple[str, ...], float] = {}


def known_to_exist(settings: Settings, qualified: str) -> bool:
    """True when this process saw table `qualified` of the settings' destination exist in the
    last KNOWN_TABLE_SECONDS and no run has failed since: on BigQuery, asking again is a query
    job (~0.7 s)."""
    seen = _known_tables.get(_table_key(settings, qualified))
    return seen is not None and time.monotonic() - seen < KNOWN_TABLE_SECONDS


def remember_exists(settings: Settings, qualified: str) -> None:
    _known_tables[_table_key(settings, qualified)] = time.monotonic()


def _table_key(settings: Settings, qualified: str) -> tuple[str, ...]:
    # one name in two DuckDB files (or projects) is two tables
    return (
        qualified,
        settings.destination_kind,
        str(settings.resolved_duckdb_path),
        settings.bigquery_project or "",
        settings.bigquery_emulator_host or "",
    )


def _give_up(created: Any, workdir: Path, settings: Settings) -> None:
    """Remove a pipeline's working dir and, if it kept one, drop its staging dataset on a
    thread of its own (best effort: the sweep takes what is left once its tables are old).

    Never on the run's own path: a pipeline given up after a failed run, or pushed out by the
    bound, may name a destination that is unreachable now, and the client retries a lost
    connection for minutes. Only BigQuery keeps staging, and it takes no destination lock."""
    shutil.rmtree(workdir, ignore_errors=True)
    if created in _staging_kept:
        endpoint = _staging_kept.pop(created)
        if engine_for(settings).destination.client_endpoint() != endpoint:
            return  # the sweep takes it, from a process pointed at that endpoint
        try:
            # opened here: the Google client takes its endpoint from the environment when
            # it is made, and the thread may start after that changed
            client = created.sql_client()
            client.open_connection()
        except Exception as error:
            log.warning("could not drop staging dataset of %s: %s", created.pipeline_name, error)
            return
        drop = threading.Thread(
            target=_drop_kept_staging_dataset,
            args=(created.pipeline_name, client),
            name="drop-kept-staging",
            daemon=True,
        )
        _drops_in_flight.add(drop)
        drop.start()


_drops_in_flight: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_DROPS_AT_EXIT_SECONDS = 10.0


@atexit.register
def _finish_drops() -> None:
    """Give drops in flight a bounded moment to end (the engine bounds each drop's retries):
    a daemon thread still inside a client call at exit keeps what it references alive past
    interpreter shutdown, which DuckDB's bindings report as leaks."""
    deadline = time.monotonic() + _DROPS_AT_EXIT_SECONDS
    for drop in list(_drops_in_flight):
        drop.join(max(0.0, deadline - time.monotonic()))


def _beyond_the_bound() -> list[tuple[Any, Path]]:
    """Take the longest unused idle pipelines out until KEPT_IN_ALL remain (the caller holds
    the guard); them and their working dirs, to give up."""
    removed: list[tuple[Any, Path]] = []
    while sum(len(idle) for idle in _idle.values()) > KEPT_IN_ALL:
        oldest_key = next(iter(_idle))
        oldest = _idle[oldest_key]
        removed.append(oldest.pop(0))
        if not oldest:
            del _idle[oldest_key]
    return removed


def _new_pipeline(
    pipeline: str, settings: Settings, run_id: str, kept_token: str | None = None
) -> tuple[Any, Path]:
    import dlt

    # every row records its dlt load id: the ledger counts only loads that completed
    os.environ["NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID"] = "true"
    # dlt sends usage telemetry to its vendor unless told not to: never from a user's
    # project (the image sets it too; this covers `python main.py` and tests)
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    root = settings.data_dir / "runs"
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=root))
    try:
        created = dlt.pipeline(
            pipeline_name=pipeline_name(pipeline),
            pipelines_dir=str(workdir),
            destination=make_destination(settings, run_id, kept_token),
            dataset_name=settings.dataset_name,
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    _route_dlt_logs_through_ours()
    return created, workdir


def _drop_staging_if_left(created: Any, settings: Settings) -> None:
    if created in _staging_kept:
        return
    if created not in _staging_dropped and _may_have_staged(created):
        with destination_lock(settings):
            _drop_staging_dataset(created)


def _forget_completed_packages(created: Any) -> None:
    """dlt keeps each completed load package in the working dir; a kept one would pile them
    up, one per push."""
    storage = created._get_load_storage()  # dlt exposes no public way to delete them
    try:
        loaded = storage.list_loaded_packages()
    except FileNotFoundError:  # the pipeline never loaded
        return
    for load_id in loaded:
        storage.delete_loaded_package(load_id)


def destination_types(pipeline: Any, table: str) -> dict[str, str]:
    """Column -> dlt data type of `table` as the destination has it (restored by dlt)."""
    # no schema yet, or a schema without the table (earlier runs loaded no rows into it)
    if not pipeline.default_schema_name or table not in pipeline.default_schema.tables:
        return {}
    columns = pipeline.default_schema.get_table_columns(table)
    return {
        name: str(column["data_type"]) for name, column in columns.items() if "data_type" in column
    }
