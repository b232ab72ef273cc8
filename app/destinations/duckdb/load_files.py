"""Plain Parquet load files while a DuckDB pipeline runs: no codec, dictionary or statistics.

dlt writes each extracted Arrow table to a Parquet file that DuckDB reads back moments later
from the same disk. pyarrow's defaults (snappy, a dictionary tried on every column,
statistics) cost 1.36 CPU-s per million rows of the bench's `orders` table and buy nothing
here: DuckDB's insert takes the same CPU from a plain file, which takes 0.38 CPU-s to write
(bench/load_levers.py). The files are about half again as large, on local disk, until the
load completes. dlt exposes the codec but not the dictionary or statistics switches, so its
writer is made here with dlt's own arguments plus those three, inside `plain_load_files`
only: a BigQuery pipeline in the same process still uploads compressed files.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

PLAIN: dict[str, Any] = {"compression": "none", "use_dictionary": False, "write_statistics": False}

_plain: ContextVar[bool] = ContextVar("ferry_plain_load_files", default=False)
_install_guard = threading.Lock()
_installed: list[bool] = []


@contextmanager
def plain_load_files() -> Iterator[None]:
    """dlt's Parquet writers made in this context (this thread's extract and normalize)
    write plain files."""
    _install()
    token = _plain.set(True)
    try:
        yield
    finally:
        _plain.reset(token)


def _install() -> None:
    """Wrap dlt's Parquet writer factory once per process; outside `plain_load_files` it
    calls dlt's own. Done on first use: importing dlt at import time slows cold start."""
    with _install_guard:
        if _installed:
            return
        from dlt.common.data_writers.writers import ParquetDataWriter

        original = ParquetDataWriter._create_writer

        def create_writer(self: Any, schema: Any) -> Any:
            if not _plain.get():
                return original(self, schema)
            import pyarrow.parquet as pa_parquet

            # the arguments dlt's own factory passes (dlt 1.31), the three above overriding
            options = self.parquet_format
            return pa_parquet.ParquetWriter(
                self._f,
                schema,
                flavor=options.flavor,
                version=options.version,
                data_page_size=options.data_page_size,
                coerce_timestamps=options.coerce_timestamps,
                allow_truncated_timestamps=options.allow_truncated_timestamps,
                use_compliant_nested_type=options.use_compliant_nested_type,
                **PLAIN,
            )

        ParquetDataWriter._create_writer = create_writer  # type: ignore[method-assign]
        _installed.append(True)
