"""Files source: listing and streaming real files (local and on the GCS emulator)."""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from core.arrow_types import arrow_schema
from core.errors import (
    BadDataError,
    ConfigError,
    SourceNotFoundError,
)
from core.spec import ArrowTypeName, FilesSource
from core.uris import split_gs_uri
from sources.files import SourceObject, get_object, list_objects, read_batches, shard
from sources.files.helpers import detect_kind
from sources.files.rejects import Rejects
from tests.emulators import GcsEmulator


def no_gcs() -> NoReturn:
    raise AssertionError("a local read must not build a GCS client")


def source(**fields: Any) -> FilesSource:
    return FilesSource.model_validate({"uri": "unused.csv", **fields})


def read_file(path: Path, **fields: Any) -> pa.Table:
    """All batches of one local file, as one table (small test files only)."""
    batches = list(read_local(path, **fields))
    return pa.Table.from_batches(batches) if batches else pa.table({})


def read_local(
    path: Path, *, batch_bytes: int = 8 << 20, cap: int | None = None, **fields: Any
) -> list[pa.RecordBatch]:
    [obj] = list_objects(str(path), base_dir=path.parent, storage_client=no_gcs)
    return list(
        read_batches(
            obj,
            source(**fields),
            storage_client=no_gcs,
            batch_bytes=batch_bytes,
            max_uncompressed_bytes=cap,
        )
    )


# --- pure helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "declared", "expected"),
    [
        ("x/a.csv", None, ("csv", False, False)),
        ("x/a.CSV.GZ", None, ("csv", True, False)),
        ("a.tsv", None, ("csv", False, True)),
        ("a.ndjson.gz", None, ("jsonl", True, False)),
        ("a.parquet", None, ("parquet", False, False)),
        ("a.data", "jsonl", ("jsonl", False, False)),
    ],
    ids=lambda value: str(value),
)
def test_detect_kind(name: str, declared: Any, expected: tuple[str, bool, bool]) -> None:
    assert tuple(detect_kind(name, declared)) == expected


def test_detect_kind_unknown_extension_asks_for_format() -> None:
    with pytest.raises(ConfigError, match=r"source\.format"):
        detect_kind("dir.v2/export", None)


def test_shard_is_a_disjoint_cover() -> None:
    objects = [SourceObject(f"gs://b/part-{i:04}.csv", i, 10) for i in range(200)]
    shares = [shard(objects, index, 3) for index in range(3)]
    assert sorted(obj.uri for share in shares for obj in share) == [obj.uri for obj in objects]
    assert all(share for share in shares)
    assert shard(objects, 1, 3) == shares[1]  # deterministic
    assert shard(objects, 0, 1) == objects
    with pytest.raises(ConfigError):
        shard(objects, 3, 3)


# --- listing local files ------------------------------------------------------------------


def test_glob_listing_with_double_star(tmp_path: Path) -> None:
    for name in ("a.csv", "x/b.csv", "x/y/c.csv", "x/y/c.json", "x/z/.hidden/d.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n1\n")
    found = list_objects("**/*.csv", base_dir=tmp_path, storage_client=no_gcs)
    assert [Path(obj.uri).relative_to(tmp_path).as_posix() for obj in found] == [
        "a.csv",
        "x/b.csv",
        "x/y/c.csv",
        "x/z/.hidden/d.csv",
    ]
    one_level = list_objects("x/*.csv", base_dir=tmp_path, storage_client=no_gcs)
    assert [obj.uri for obj in one_level] == [str(tmp_path / "x/b.csv")]
    stat = (tmp_path / "a.csv").stat()
    assert found[0] == SourceObject(str(tmp_path / "a.csv"), stat.st_mtime_ns, stat.st_size)


def test_relative_pattern_with_parent_segments_resolves(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "conf").mkdir()
    (tmp_path / "data" / "a.csv").write_text("a\n1\n")
    [obj] = list_objects("../data/*.csv", base_dir=tmp_path / "conf", storage_client=no_gcs)
    assert obj.uri == str(tmp_path / "data" / "a.csv")
    assert ".." not in obj.uri


def test_missing_local_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match=r"nope/\*\.csv"):
        list_objects("nope/*.csv", base_dir=tmp_path, storage_client=no_gcs)
    with pytest.raises(SourceNotFoundError, match=r"missing\.csv"):
        list_objects("missing.csv", base_dir=tmp_path, storage_client=no_gcs)
    with pytest.raises(SourceNotFoundError):
        get_object(str(tmp_path / "missing.csv"), None, storage_client=no_gcs)


def test_gcs_names_with_dot_segments_never_become_local_paths(tmp_path: Path) -> None:
    # The GCS emulator cannot store such names, so prove it without one: the read goes to
    # the storage client, never to the local file the name would resolve to.
    local = tmp_path / "etc" / "a.csv"
    local.parent.mkdir()
    local.write_text("a\n1\n")
    for name in (f"x/../..{local}", f"x/%2e%2e/%2E%2E{local}"):
        obj = SourceObject(f"gs://bucket/{name}", 1, local.stat().st_size)

        def remote_only() -> NoReturn:
            raise LookupError("went to GCS")

        with pytest.raises(LookupError, match="went to GCS"):
            list(read_batches(obj, source(), storage_client=remote_only))
        assert split_gs_uri(obj.uri) == ("bucket", name)


# --- CSV ------------------------------------------------------------------------------------


def test_csv_with_semicolon_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id;name\n1;Ann\n2;Bob\n")
    table = read_file(path, csv={"delimiter": ";"})
    assert table.to_pylist() == [{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}]


def test_tsv_defaults_to_tab(tmp_path: Path) -> None:
    path = tmp_path / "a.tsv"
    path.write_text("id\tname\n1\tAnn, Jr.\n")
    assert read_file(path).to_pylist() == [{"id": 1, "name": "Ann, Jr."}]


def test_csv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("1,Ann\n2,Bob\n")
    named = read_file(path, csv={"header": False, "column_names": ["id", "name"]})
    assert named.column_names == ["id", "name"]
    assert named.num_rows == 2
    assert read_file(path, csv={"header": False}).column_names == ["f0", "f1"]


def test_csv_quoted_values_span_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('id,note\n1,"two\nlines"\n2,"say ""hi"""\n')
    assert read_file(path).to_pylist() == [
        {"id": 1, "note": "two\nlines"},
        {"id": 2, "note": 'say "hi"'},
    ]


def test_csv_latin1(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("city\nZürich\nSão Paulo\n".encode("latin-1"))
    table = read_file(path, csv={"encoding": "latin-1"})
    assert table.column("city").to_pylist() == ["Zürich", "São Paulo"]


def test_csv_strips_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbfid,name\n1,Ann\n")
    assert read_file(path).column_names == ["id", "name"]


def test_csv_null_values(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,name\n1,\n2,NULL\n3,x\n")
    assert read_file(path).column("name").to_pylist() == [None, None, "x"]


@pytest.mark.parametrize("name", ["a.csv.gz", "a.csv"], ids=["by-extension", "by-magic-bytes"])
def test_gzip_csv(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"id,name\n1,Ann\n2,Bob\n"))
    assert read_file(path).num_rows == 2


def test_declared_column_types(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        "zip,at,day,amount,flag\n"
        "00123,2024-05-01 10:00:00,2024-05-01,1.25,true\n"
        "00456,2024-05-01T12:00:00+02:00,2024-05-02,2.50,false\n"
    )
    columns = {
        "zip": "string",
        "at": "timestamp",
        "day": "date",
        "amount": "decimal",
        "flag": "bool",
    }
    table = read_file(path, columns=columns)
    assert table.schema.field("zip").type == pa.string()
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("amount").type == pa.decimal128(38, 9)
    assert table.column("zip").to_pylist() == ["00123", "00456"]
    at = table.column("at").to_pylist()
    assert [value.hour for value in at] == [10, 10]  # naive is UTC; +02:00 converted


def test_empty_and_header_only_files_yield_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("id,name\n")
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "empty.csv.gz").write_bytes(gzip.compress(b""))
    for name in ("empty.csv", "header.csv", "empty.jsonl", "empty.csv.gz"):
        assert read_local(tmp_path / name) == [], name


def test_ragged_row_names_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(BadDataError, match=r"ragged\.csv") as caught:
        read_local(path)
    assert "3,4,5" in caught.value.message
    assert "3 fields, expected 2" in caught.value.message


def test_wrong_type_under_declared_column(tmp_path: Path) -> None:
    path = tmp_path / "typed.csv"
    path.write_text("id,amount\n1,2\n2,x\n")
    with pytest.raises(BadDataError, match=r"typed\.csv") as caught:
        read_local(path, columns={"amount": "int64"})
    assert "'amount'" in caught.value.message
    assert "'x'" in caught.value.message


def test_wrong_declared_timestamp_names_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,at\n1,2024-01-01 00:00:00\n2,2024-01-02\n3,yesterday\n")
    with pytest.raises(BadDataError, match="'yesterday' at data row 3"):
        read_local(path, columns={"at": "timestamp"})


def test_later_block_disagreeing_with_inferred_type_hints_declaring(tmp_path: Path) -> None:
    path = tmp_path / "drift.csv"
    path.write_text("id,code\n" + "".join(f"{i},{i}\n" for i in range(20_000)) + "20000,A7\n")
    with pytest.raises(BadDataError, match="declare the column type") as caught:
        read_local(path, batch_bytes=16 << 10)
    assert "'code'" in caught.value.message
    assert "'A7'" in caught.value.message
    assert read_file(path, columns={"code": "string"}).num_rows == 20_001


def test_undecodable_text_hints_encoding(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("id,city\n1,Zürich\n".encode("latin-1"))
    with pytest.raises(BadDataError, match=r"'city'.*source\.csv\.encoding"):
        read_local(path)


def test_truncated_gzip_is_bad_data(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    data = gzip.compress(b"id\n" + b"1\n" * 10_000)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadDataError, match=r"a\.csv\.gz.*gzip"):
        read_local(path)


def test_batches_are_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("id,name,amount\n")
        out.writelines(f"{i},name-{i},{i * 0.5}\n" for i in range(200_000))
    assert path.stat().st_size > 3 << 20
    batches = read_local(path, batch_bytes=256 << 10)
    assert len(batches) > 10
    assert sum(batch.num_rows for batch in batches) == 200_000
    assert len({batch.schema for batch in batches}) == 1
    # Arrow reads blocks of batch_bytes / 8 (at least 1 MiB); they are joined up to batch_bytes.
    joined = read_local(path, batch_bytes=2 << 20)
    assert 1 < len(joined) < 4
    assert all(batch.nbytes >= 2 << 20 for batch in joined[:-1])
    assert sum(batch.num_rows for batch in joined) == 200_000


BIG_CSV_ROWS = 60_000


def write_big_csv(path: Path, bad: dict[int, str] | None = None) -> Path:
    """~4 MiB of CSV (more than one read block): quoted commas, nulls, zoned timestamps,
    an undeclared timestamp; `bad` replaces whole data rows (0-based) by the text given."""
    bad = bad or {}
    lines = ["id,name,amount,at,seen\n"]
    for i in range(BIG_CSV_ROWS):
        name = f'"name {i}, the {i % 7}th"' if i % 3 else ""
        amount = "" if i % 11 == 0 else f"{i * 0.25}"
        at = f"2026-09-12T19:35:07.{i % 999999:06d}-05:00"
        line = f"{i},{name},{amount},{at},2026-01-02 03:04:05\n"
        lines.append(bad.get(i, line))
    path.write_text("".join(lines))
    assert path.stat().st_size > 3 << 20
    return path


BIG_CSV_COLUMNS: dict[str, ArrowTypeName] = {"id": "int64", "amount": "float64", "at": "timestamp"}


def test_big_csv_read_in_blocks_equals_the_one_thread_read(tmp_path: Path) -> None:
    """Over one read block, CSV is parsed a block at a time on both cores; the rows, values
    and types are the one-thread streaming reader's (the reader of `on_bad_rows: reject`)."""
    path = write_big_csv(tmp_path / "big.csv")
    blocks = read_file(path, columns=BIG_CSV_COLUMNS, batch_bytes=1 << 20)
    reference = read_file(path, columns=BIG_CSV_COLUMNS, on_bad_rows="reject")
    assert blocks.num_rows == BIG_CSV_ROWS
    assert blocks.schema == reference.schema
    assert blocks.equals(reference)
    assert blocks.column("name").null_count == BIG_CSV_ROWS // 3


def test_bad_value_in_a_later_block_names_its_row(tmp_path: Path) -> None:
    row = BIG_CSV_ROWS - 5  # in the last block
    line = f"{row},x,1.5x,2026-09-12T19:35:07-05:00,2026-01-02 03:04:05\n"
    path = write_big_csv(tmp_path / "late.csv", {row: line})
    with pytest.raises(BadDataError, match=r"late\.csv") as caught:
        read_local(path, columns=BIG_CSV_COLUMNS, batch_bytes=1 << 20)
    assert "'amount'" in caught.value.message
    assert "'1.5x'" in caught.value.message
    # as Arrow's threaded streaming reader says it: the last row known good before the block
    after = re.search(r"at a row after data row (\d+)", caught.value.message)
    assert after is not None
    assert BIG_CSV_ROWS // 2 < int(after.group(1)) <= row


def test_ragged_row_in_a_later_block_names_its_line(tmp_path: Path) -> None:
    row = BIG_CSV_ROWS - 5
    path = write_big_csv(tmp_path / "ragged.csv", {row: "1,2,3,4,5,6\n"})
    with pytest.raises(BadDataError, match=r"ragged\.csv") as caught:
        read_local(path, columns=BIG_CSV_COLUMNS, batch_bytes=1 << 20)
    assert "1,2,3,4,5,6" in caught.value.message
    assert f"line {row + 2}" in caught.value.message


def test_undeclared_type_drifting_in_a_later_block_hints_declaring(tmp_path: Path) -> None:
    row = BIG_CSV_ROWS - 5
    line = f"{row},,1.5,2026-09-12T19:35:07-05:00,soon\n"
    path = write_big_csv(tmp_path / "drift.csv", {row: line})
    with pytest.raises(BadDataError, match="declare the column type") as caught:
        read_local(path, columns=BIG_CSV_COLUMNS, batch_bytes=1 << 20)
    assert "'seen'" in caught.value.message
    assert "'soon'" in caught.value.message


def test_gzip_bomb_stops_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(b"a,b\n")
        for _ in range(16):
            out.write(b"1,2\n" * (1 << 18))  # 16 MiB of text, ~30 KiB on disk
    assert path.stat().st_size < 1 << 20
    with pytest.raises(BadDataError, match="expands beyond the limit"):
        read_local(path, batch_bytes=1 << 20, cap=4 << 20)
    assert sum(b.num_rows for b in read_local(path, cap=32 << 20)) == 16 << 18


def test_uncompressed_file_over_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("a\n" + "1\n" * 1000)
    with pytest.raises(BadDataError, match="beyond the limit"):
        read_local(path, cap=100)


# --- JSON lines and Parquet -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.jsonl", "a.ndjson.gz"])
def test_jsonl(tmp_path: Path, name: str) -> None:
    text = b'{"id": 1, "tags": ["x"], "at": "2024-01-01T00:00:00Z"}\n{"id": 2, "tags": []}\n'
    path = tmp_path / name
    path.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    table = read_file(path, columns={"at": "timestamp"})
    assert table.column("id").to_pylist() == [1, 2]
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.column("tags").to_pylist() == [["x"], []]


def test_jsonl_field_appearing_late_hints_declaring(tmp_path: Path) -> None:
    path = tmp_path / "late.jsonl"
    path.write_text('{"id": 1}\n' * 5000 + '{"id": 2, "extra": "x"}\n')
    with pytest.raises(BadDataError, match=r"late\.jsonl.*source\.columns"):
        read_local(path, batch_bytes=4 << 10)
    assert read_file(path, columns={"extra": "string"}).num_rows == 5001


TIMESTAMP_TEXTS = {
    "utc": "2026-12-08T16:54:12Z",
    "utc_fraction": "2026-12-08T16:54:12.352405Z",
    "offset": "2026-09-13T06:05:07.352405+05:30",
    "negative_offset": "2026-09-12T19:35:07-05:00",
    "naive": "2024-01-01 00:00:00",
    "day": "2024-05-01",
}


def test_jsonl_infers_timestamps_as_csv_does(tmp_path: Path) -> None:
    """`...Z` lands as UTC, as from CSV (Arrow's JSON reader typed it naive); fractions and
    offsets too, and a value without a zone stays naive in both."""
    (tmp_path / "a.jsonl").write_text(json.dumps(TIMESTAMP_TEXTS) + "\n")
    (tmp_path / "a.csv").write_text(
        ",".join(TIMESTAMP_TEXTS) + "\n" + ",".join(TIMESTAMP_TEXTS.values()) + "\n"
    )
    from_json, from_csv = read_file(tmp_path / "a.jsonl"), read_file(tmp_path / "a.csv")
    assert from_json.schema == from_csv.schema
    assert from_json.schema.field("utc").type == pa.timestamp("s", tz="UTC")
    assert from_json.schema.field("naive").type == pa.timestamp("s")
    assert from_json.to_pylist() == from_csv.to_pylist()
    assert from_json.column("offset")[0].as_py().hour == 0  # 06:05 at +05:30 is 00:35 UTC
    assert from_json.column("day").to_pylist() == [date(2024, 5, 1)]


def test_jsonl_undeclared_types_are_duckdbs(tmp_path: Path) -> None:
    """An undeclared JSON column lands with the type family DuckDB's own reader gives it."""
    import duckdb

    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({**TIMESTAMP_TEXTS, "n": 1, "x": 1.5, "s": "a"}) + "\n")
    relation = duckdb.connect().sql("SELECT * FROM read_json_auto(?)", params=[str(path)])
    assert relation is not None
    theirs = relation.to_arrow_table()
    ours = read_file(path)
    for name in theirs.schema.names:
        mine, duck = ours.schema.field(name).type, theirs.schema.field(name).type
        assert _family(mine) == _family(duck), name


def _family(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    return str(arrow_type)


# --- JSON lines, declared columns only (DuckDB's reader) ------------------------------------

DECLARED: dict[str, ArrowTypeName] = {
    "id": "int64",
    "price": "float64",
    "gift": "bool",
    "at": "timestamp",
    "day": "date",
    "amount": "decimal",
    "code": "string",
}
DECLARED_LINES = (
    '{"id": 1, "price": 2, "gift": true, "at": "2026-09-13T06:05:07.352405+05:30", '
    '"day": "2024-05-01", "amount": 1.25, "code": "00123", "extra": {"x": 1}}\n'
    "\n"
    '{"id": "2", "price": 2.5, "gift": false, "at": "2024-05-01T10:00:00Z", '
    '"day": "2024-05-02", "amount": "2.50", "code": 7}\n'
    '{"at": "2024-05-01 12:00:00"}\n'
)


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
    return path


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz"], ids=["path", "gzip-stream"])
def test_jsonl_declared_columns_only(tmp_path: Path, name: str) -> None:
    path = write_text(tmp_path / name, DECLARED_LINES)
    table = read_file(path, columns=DECLARED, undeclared_columns="ignore")
    assert table.schema == arrow_schema(DECLARED)  # as declared, in that order; no `extra`
    assert table.column("id").to_pylist() == [1, 2, None]
    assert table.column("price").to_pylist() == [2.0, 2.5, None]
    assert table.column("gift").to_pylist() == [True, False, None]
    assert [value.hour for value in table.column("at").to_pylist()] == [0, 10, 12]
    assert table.column("day").to_pylist()[:2] == [date(2024, 5, 1), date(2024, 5, 2)]
    assert table.column("amount").to_pylist()[:2] == [Decimal("1.25"), Decimal("2.50")]
    assert table.column("code").to_pylist() == ["00123", "7", None]


@pytest.mark.parametrize("value", ["2.5", "true", '"two"'])
def test_jsonl_declared_integer_is_never_rounded(tmp_path: Path, value: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n{"id": ' + value + "}\n")
    with pytest.raises(BadDataError, match=r"'id'.* at data row 2"):
        read_local(path, columns={"id": "int64"}, undeclared_columns="ignore")


def test_jsonl_declared_rejects_name_their_lines(tmp_path: Path) -> None:
    """A bad value is rejected by its row; a line that is not JSON sends the rest of the file
    to the line-by-line reader, after the rows already handed on (none twice)."""
    path = tmp_path / "a.jsonl"
    good = "".join(f'{{"id": {i}, "n": {i}}}\n' for i in range(1, 5001))
    path.write_text(good + '{"id": 5001, "n": "lots"}\nnot json\n{"id": 5003, "n": 3}\n')
    [obj] = list_objects(str(path), base_dir=tmp_path, storage_client=no_gcs)
    declared = source(
        columns={"id": "int64", "n": "int64"}, undeclared_columns="ignore", on_bad_rows="reject"
    )
    rejects = Rejects(obj.uri, 10)
    batches = list(
        read_batches(obj, declared, storage_client=no_gcs, batch_bytes=16 << 10, rejects=rejects)
    )
    assert len(batches) > 1
    ids = pa.Table.from_batches(batches).column("id").to_pylist()
    assert ids == [*range(1, 5001), 5003]
    found = sorted((row.row, row.column or "") for row in rejects.rows)
    assert found == [(5001, "n"), (5002, "")]
    assert any("'lots' is not int64" in row.reason for row in rejects.rows)


def test_jsonl_declared_gzip_bomb_stops_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as out:
        for _ in range(16):
            out.write(b'{"id": 1}\n' * (1 << 17))  # 20 MiB of text
    with pytest.raises(BadDataError, match="expands beyond the limit"):
        read_local(
            path,
            batch_bytes=1 << 20,
            cap=4 << 20,
            columns={"id": "int64"},
            undeclared_columns="ignore",
        )


@pytest.mark.parametrize("name", ["a.csv", "a.parquet"])
def test_undeclared_columns_are_ignored_in_every_format(tmp_path: Path, name: str) -> None:
    table = pa.table({"id": ["1", "2"], "note": ["x", "y"], "day": ["2024-01-02", None]})
    path = tmp_path / name
    if name.endswith(".csv"):
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    declared: dict[str, ArrowTypeName] = {"day": "date", "id": "int64"}
    read = read_file(path, columns=declared, undeclared_columns="ignore")
    assert read.column_names == ["id", "day"]  # the file's order, `note` left out
    assert read.column("id").to_pylist() == [1, 2]
    assert read.schema.field("day").type == pa.date32()


def test_declaring_no_column_cannot_ignore_the_undeclared() -> None:
    with pytest.raises(ValueError, match="needs the columns"):
        source(undeclared_columns="ignore")


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    table = pa.table({"id": list(range(50_000)), "day": ["2024-01-02"] * 50_000})
    pq.write_table(table, path, row_group_size=10_000)
    batches = read_local(path, batch_bytes=64 << 10, columns={"day": "date"})
    assert len(batches) > 1
    result = pa.Table.from_batches(batches)
    assert result.column("id").to_pylist() == list(range(50_000))
    assert result.schema.field("day").type == pa.date32()


def test_gzipped_parquet_is_rejected(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": [1]}), buffer)
    path = tmp_path / "a.parquet.gz"
    path.write_bytes(gzip.compress(buffer.getvalue()))
    with pytest.raises(BadDataError, match=r"a\.parquet\.gz.*uncompressed"):
        read_local(path)


# --- Cloud Storage (emulator) ---------------------------------------------------------------


def upload(gcs: GcsEmulator, bucket: str, objects: dict[str, bytes]) -> None:
    client = gcs.client()
    target = client.bucket(bucket)
    if not target.exists():
        client.create_bucket(bucket)
    for name, data in objects.items():
        target.blob(name).upload_from_string(data)


@pytest.mark.emulators
def test_gcs_listing_with_glob_across_prefixes(gcs_env: GcsEmulator, unique_name: str) -> None:
    upload(
        gcs_env,
        unique_name,
        {
            "in/2024/01/a.csv": b"a\n1\n",
            "in/2024/02/b.csv": b"a\n2\n",
            "in/2024/02/b.json": b"{}\n",
            "other/c.csv": b"a\n3\n",
        },
    )
    found = list_objects(
        f"gs://{unique_name}/in/**/*.csv",
        base_dir=Path("/nonexistent"),
        storage_client=gcs_env.client,
    )
    assert [obj.uri for obj in found] == [
        f"gs://{unique_name}/in/2024/01/a.csv",
        f"gs://{unique_name}/in/2024/02/b.csv",
    ]
    blob = gcs_env.client().bucket(unique_name).get_blob("in/2024/01/a.csv")
    assert found[0].generation == blob.generation
    assert found[0].size == 4


@pytest.mark.emulators
def test_gcs_pattern_without_a_glob_is_that_object_or_that_folder(
    gcs_env: GcsEmulator, unique_name: str
) -> None:
    upload(
        gcs_env,
        unique_name,
        {"land/a.csv": b"a\n1\n", "land/x/b.csv": b"a\n2\n", "land-secrets/s.csv": b"a\n3\n"},
    )

    def listed(pattern: str) -> list[str]:
        found = list_objects(pattern, base_dir=Path("/nonexistent"), storage_client=gcs_env.client)
        return [obj.uri.removeprefix(f"gs://{unique_name}/") for obj in found]

    assert listed(f"gs://{unique_name}/land") == ["land/a.csv", "land/x/b.csv"]
    assert listed(f"gs://{unique_name}/land/") == ["land/a.csv", "land/x/b.csv"]
    assert listed(f"gs://{unique_name}/land/a.csv") == ["land/a.csv"]
    with pytest.raises(SourceNotFoundError):
        listed(f"gs://{unique_name}/lan")


def test_local_pattern_without_a_glob_is_that_file_or_that_folder(tmp_path: Path) -> None:
    for name in ("land/a.csv", "land/x/b.csv", "land-secrets/s.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n1\n")

    def listed(pattern: str) -> list[str]:
        found = list_objects(pattern, base_dir=tmp_path, storage_client=no_gcs)
        return [Path(obj.uri).relative_to(tmp_path.resolve()).as_posix() for obj in found]

    assert listed("land") == ["land/a.csv", "land/x/b.csv"]
    assert listed("land/a.csv") == ["land/a.csv"]
    with pytest.raises(SourceNotFoundError):
        listed("lan")


@pytest.mark.emulators
def test_gcs_reads_gzip_csv_and_parquet_by_streaming(
    gcs_env: GcsEmulator, unique_name: str
) -> None:
    rows = "".join(f"{i},name-{i}\n" for i in range(100_000)).encode()
    parquet = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(30_000))}), parquet, row_group_size=5_000)
    upload(
        gcs_env,
        unique_name,
        {"x/a.csv.gz": gzip.compress(b"id,name\n" + rows), "x/b.parquet": parquet.getvalue()},
    )
    csv_obj = get_object(f"gs://{unique_name}/x/a.csv.gz", None, storage_client=gcs_env.client)
    batches = list(
        read_batches(csv_obj, source(), storage_client=gcs_env.client, batch_bytes=128 << 10)
    )
    assert len(batches) > 5
    assert sum(batch.num_rows for batch in batches) == 100_000

    pq_obj = get_object(f"gs://{unique_name}/x/b.parquet", None, storage_client=gcs_env.client)
    assert pq_obj.generation > 0
    table = pa.Table.from_batches(
        read_batches(pq_obj, source(), storage_client=gcs_env.client, batch_bytes=16 << 10)
    )
    assert table.column("id").to_pylist() == list(range(30_000))


@pytest.mark.emulators
@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz"], ids=["plain", "gzip"])
def test_gcs_reads_declared_jsonl_by_streaming(
    gcs_env: GcsEmulator, unique_name: str, name: str
) -> None:
    rows = "".join(
        f'{{"id": {i}, "at": "2026-01-01T00:00:00Z", "skip": "x"}}\n' for i in range(30_000)
    )
    data = rows.encode()
    upload(gcs_env, unique_name, {name: gzip.compress(data) if name.endswith(".gz") else data})
    obj = get_object(f"gs://{unique_name}/{name}", None, storage_client=gcs_env.client)
    declared = source(columns={"id": "int64", "at": "timestamp"}, undeclared_columns="ignore")
    batches = list(
        read_batches(obj, declared, storage_client=gcs_env.client, batch_bytes=128 << 10)
    )
    assert len(batches) > 5
    table = pa.Table.from_batches(batches)
    assert table.schema == arrow_schema({"id": "int64", "at": "timestamp"})
    assert table.column("id").to_pylist() == list(range(30_000))


@pytest.mark.emulators
def test_gcs_missing_bucket_and_object(gcs_env: GcsEmulator, unique_name: str) -> None:
    with pytest.raises(SourceNotFoundError):
        list_objects(f"gs://{unique_name}/*.csv", base_dir=Path(), storage_client=gcs_env.client)
    upload(gcs_env, unique_name, {"a.csv": b"a\n1\n"})
    with pytest.raises(SourceNotFoundError, match=r"b\.csv"):
        list_objects(f"gs://{unique_name}/b.csv", base_dir=Path(), storage_client=gcs_env.client)
    with pytest.raises(SourceNotFoundError):
        get_object(f"gs://{unique_name}/b.csv", None, storage_client=gcs_env.client)


@pytest.mark.emulators
def test_gcs_replaced_generation_is_not_found(gcs_env: GcsEmulator, unique_name: str) -> None:
    upload(gcs_env, unique_name, {"a.csv": b"a\n1\n"})
    first = get_object(f"gs://{unique_name}/a.csv", None, storage_client=gcs_env.client)
    upload(gcs_env, unique_name, {"a.csv": b"a\n2\n"})
    with pytest.raises(SourceNotFoundError, match="replaced"):
        get_object(first.uri, first.generation, storage_client=gcs_env.client)
