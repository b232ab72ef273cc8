"""Engine name -> engine: the only way the rest of ferry reaches DuckDB or BigQuery.

Each engine is a folder with the same three modules (dlt keeps `destinations/impl/<name>/`
the same way): `destination.py` (dlt destination factory, lock, dataset listing, hints),
`models.py` (model materialisation) and `errors.py` (which library exceptions mean what).
The protocols below are what each module must provide; mypy checks both folders against
them where `ENGINES` is built. Importing this module registers every engine's error
recognition with core.errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from app.destinations.bigquery import destination as bigquery_destination
from app.destinations.bigquery import errors as bigquery_errors
from app.destinations.bigquery import models as bigquery_models
from app.destinations.duckdb import destination as duckdb_destination
from app.destinations.duckdb import errors as duckdb_errors
from app.destinations.duckdb import models as duckdb_models
from app.destinations.warehouse import Relation, Warehouse
from core.errors import FerryError, Party, register_engine_errors
from core.settings import Settings
from core.spec import DestinationSpec


class Appender(Protocol):
    """Rows appended to a table while the run still reads, invisible until `commit`."""

    def append(self, table: Any) -> None:
        """Queue an Arrow table with the destination table's columns (load id included)."""
        ...

    def commit(self) -> int:
        """Commit every appended row (called right before dlt's load); returns how many."""
        ...

    def close(self) -> None:
        """Roll back whatever was not committed; idempotent."""
        ...


class DestinationModule(Protocol):
    """An engine's `destination.py`."""

    APPEND_UNDER_LOCK: bool
    """True: all writers queue on one lock, so an object never loaded may be appended."""

    APPENDS_NEW_OBJECTS: bool
    """True: an append pipeline's objects with no rows yet are appended without the lock's
    second look (plan._append_guard)."""

    STREAMED_APPENDS: bool
    """True: `streamed_append` may give an append that runs while the run reads."""

    STREAMING_INSERTS: bool
    """True: side-table rows (the run log) go in by `append_rows`, not by a MERGE."""

    KEEPS_STAGING: bool
    """True: a kept pipeline keeps its staging dataset across its runs."""

    SQL_TYPES: dict[str, str]
    """dlt data type -> the engine's SQL type, for ferry's own bound statements."""

    def make_destination(self, settings: Settings, staging_layout: str) -> Any: ...

    def pipeline_config(self, settings: Settings) -> AbstractContextManager[None]: ...

    def lock(self, settings: Settings, timeout: float = ...) -> AbstractContextManager[None]: ...

    def writer(self, settings: Settings, table: str) -> AbstractContextManager[None]:
        """Held from a load's last check to its last commit into `table`: loads of one
        table take turns (app/destinations/writers.py)."""
        ...

    def adapt(self, resource: Any, destination: DestinationSpec, *, lineage: bool) -> Any: ...

    def describe(self, settings: Settings, tables: Sequence[str]) -> list[str]: ...

    def list_datasets(self, client: Any, settings: Settings) -> list[str]: ...

    def drop_dataset(self, client: Any, settings: Settings, name: str) -> None: ...

    def append_rows(
        self, client: Any, table: str, rows: list[dict[str, Any]], ids: list[str]
    ) -> bool: ...

    def last_modified(self, client: Any, settings: Settings, name: str) -> datetime | None: ...

    def appended_table_hints(self) -> dict[str, Any]:
        """dlt table hints for an append-only table every pipeline of the dataset shares."""
        ...

    def forget_known(self) -> None: ...

    def streamed_append(
        self,
        pipeline: Any,
        settings: Settings,
        table: str,
        schema: Any,
        columns: Sequence[str],
        load_id: str,
    ) -> Appender | None:
        """An append into `table` that runs while the run reads (dlt's live extract `schema`
        has the table); None where the engine loads only through dlt's load step."""
        ...

    def client_endpoint(self) -> str | None: ...


class ModelsModule(Protocol):
    """An engine's `models.py`."""

    VALIDATION_WAREHOUSE: Warehouse

    def warehouse(self, settings: Settings) -> Warehouse: ...

    def run(self, client: Any, sql: str, location: str | None) -> list[tuple[Any, ...]]: ...

    def relation_kind(self, client: Any, warehouse: Warehouse, name: str) -> Relation | None: ...

    def columns(self, client: Any, warehouse: Warehouse, name: str) -> list[str]: ...

    def swap(
        self, client: Any, warehouse: Warehouse, temporary: str, name: str, location: str | None
    ) -> None: ...

    def unknown_functions(self, sql: str) -> list[str]: ...

    def append_rows(
        self, client: Any, warehouse: Warehouse, name: str, rows: list[dict[str, Any]]
    ) -> bool:
        """Append `rows` without DML where the engine can (False: the caller INSERTs)."""
        ...


class ErrorsModule(Protocol):
    """An engine's `errors.py`."""

    def recognise(self, error: BaseException, party: Party) -> FerryError | None: ...

    def unwrap(self, error: BaseException) -> BaseException | None: ...


@dataclass(frozen=True)
class Engine:
    """One engine folder."""

    name: str
    destination: DestinationModule
    models: ModelsModule
    errors: ErrorsModule


ENGINES: dict[str, Engine] = {
    "bigquery": Engine("bigquery", bigquery_destination, bigquery_models, bigquery_errors),
    "duckdb": Engine("duckdb", duckdb_destination, duckdb_models, duckdb_errors),
}
"""Every engine, by the name `FERRY_DESTINATION` gives it."""

for _engine in ENGINES.values():
    register_engine_errors(_engine.errors.recognise, _engine.errors.unwrap)


def engine_for(settings: Settings) -> Engine:
    """The engine the settings load into."""
    return ENGINES[settings.destination_kind]


def all_engines() -> Iterator[Engine]:
    """Every engine, in a fixed order (for questions asked of each, e.g. model validation)."""
    return iter(ENGINES.values())
