"""DuckDB pipelines write plain Parquet load files; anything else keeps dlt's defaults."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pa_parquet

from app.destinations.duckdb.load_files import plain_load_files


def _write_with_dlt(path: Path) -> pa_parquet.ColumnChunkMetaData:
    from dlt.common.data_writers.writers import ArrowToParquetWriter

    table = pa.table({"text": pa.array(["a", "b"] * 500), "n": pa.array(range(1000))})
    with path.open("wb") as handle:
        writer = ArrowToParquetWriter(handle)
        writer.write_header({})
        writer.write_data([table])
        writer.write_footer()
        writer.close()
    assert pa_parquet.read_table(path).equals(table)  # same data either way
    return pa_parquet.ParquetFile(path).metadata.row_group(0).column(0)


def test_plain_inside_dlt_defaults_outside(tmp_path: Path) -> None:
    with plain_load_files():
        plain = _write_with_dlt(tmp_path / "plain.parquet")
    default = _write_with_dlt(tmp_path / "default.parquet")
    assert plain.compression == "UNCOMPRESSED"
    assert not plain.is_stats_set
    assert not any("DICT" in encoding for encoding in plain.encodings)
    assert default.compression == "SNAPPY"
    assert default.is_stats_set
    assert any("DICT" in encoding for encoding in default.encodings)
