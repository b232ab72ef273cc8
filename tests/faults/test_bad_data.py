"""Bad input rows and files, through the runner into DuckDB: every input row is either loaded
or kept in `<table>__rejects` (on_bad_rows: reject), or the run fails with nothing of it
loaded (on_bad_rows: fail, and whole-file faults such as a wrong encoding in either mode)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from app.run.catalog import Catalog
from app.run.runner import RunRequest, run
from core.errors import BadDataError, FerryError
from core.settings import Settings
from tests.helpers import count, duckdb_settings, query, write_catalog

HEADER = "id,amount,day,paid,at\n"

PIPELINE = """
pipelines:
  - name: typed
    source:
      uri: "in/*"
      columns: {id: int64, amount: float64, day: date, paid: bool, at: timestamp}
      on_bad_rows: MODE
      max_rejected_rows: CAP
    destination: {table: typed, DISPOSITION}
"""

DISPOSITIONS = {
    "append": "write_disposition: append",
    "merge": "write_disposition: merge, primary_key: [id]",
}

SMALL_BATCHES = 64 << 10
"""batch_bytes for multi-batch files: a fault deep in a file comes after batches were extracted."""


def typed_catalog(
    tmp_path: Path, mode: str = "reject", disposition: str = "append", cap: int = 10_000
) -> Catalog:
    """mode "default" leaves on_bad_rows out (it is `fail`)."""
    (tmp_path / "in").mkdir(exist_ok=True)
    bad_rows = "" if mode == "default" else f"      on_bad_rows: {mode}\n"
    text = (
        PIPELINE.replace("      on_bad_rows: MODE\n", bad_rows)
        .replace("CAP", str(cap))
        .replace("DISPOSITION", DISPOSITIONS[disposition])
    )
    return write_catalog(tmp_path, text)


def good_row(n: int) -> str:
    return (
        f"{n},{n}.25,2026-01-{n % 28 + 1:02d},{'true' if n % 2 else 'false'},2026-01-01T10:00:00Z\n"
    )


def good_rows(start: int, stop: int) -> str:
    return "".join(good_row(n) for n in range(start, stop))


def write_csv(path: Path, body: str) -> Path:
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def bump_generation(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def ids(settings: Settings, table: str = "typed") -> list[int]:
    return [int(row[0]) for row in query(settings, f"select id from ferry.{table} order by id")]


def distinct_ids(settings: Settings) -> int:
    return int(query(settings, "select count(distinct id) from ferry.typed")[0][0])


def failed_report(error: FerryError) -> dict[str, object]:
    assert error.report is not None
    return error.report.to_dict()


# --- on_bad_rows: reject ---------------------------------------------------------------

BAD_ROWS = {
    "too-many-fields": (
        "900,1.0,2026-01-01,true,2026-01-01T00:00:00Z,surplus",
        "expected 5 fields, got 6",
    ),
    "too-few-fields": ("901,1.0", "expected 5 fields, got 2"),
    "int-column": (
        "9O2,1.0,2026-01-01,true,2026-01-01T00:00:00Z",
        "column 'id': '9O2' is not int64",
    ),
    "float-column": (
        "903,1.0.0,2026-01-01,true,2026-01-01T00:00:00Z",
        "column 'amount': '1.0.0' is not float64",
    ),
    "date-column": (
        "904,1.0,2026-02-30,true,2026-01-01T00:00:00Z",
        "column 'day': '2026-02-30' is not date",
    ),
    "bool-column": (
        "905,1.0,2026-01-01,maybe,2026-01-01T00:00:00Z",
        "column 'paid': 'maybe' is not bool",
    ),
    "timestamp-column": (
        "906,1.0,2026-01-01,true,yesterday",
        "column 'at': 'yesterday' is not timestamp",
    ),
}


def test_every_kind_of_bad_row_is_rejected_and_counted_the_rest_loads(tmp_path: Path) -> None:
    catalog = typed_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    lines = [line for line, _ in BAD_ROWS.values()]
    # each bad row between good ones, and one more as the last line (no trailing newline)
    body = "".join(good_rows(n * 10, n * 10 + 3) + line + "\n" for n, line in enumerate(lines))
    path = write_csv(tmp_path / "in" / "a.csv", body + good_rows(500, 503) + lines[2])
    good = 3 * len(lines) + 3

    report = run(RunRequest("typed"), settings, catalog)

    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (
        good + len(lines) + 1,
        good,
        len(lines) + 1,
    )
    assert report.rows_read == report.rows_loaded + report.rows_rejected
    assert count(settings, "typed") == good == distinct_ids(settings)
    rejects = query(
        settings,
        "select reason, raw, _ferry_source_uri, _ferry_source_generation from ferry.typed__rejects",
    )
    assert sorted(reason for reason, *_ in rejects) == sorted(
        [reason for _, reason in BAD_ROWS.values()] + [BAD_ROWS["int-column"][1]]
    )
    for reason, raw, uri, generation in rejects:
        line = next(line for line, why in BAD_ROWS.values() if why == reason)
        if reason.startswith("expected"):
            assert raw == line, "a ragged row is kept as its text"
        else:
            assert line.split(",")[0] in raw and reason.split("'")[3] in raw
        assert (uri, generation) == (str(path), path.stat().st_mtime_ns)


@pytest.mark.parametrize("disposition", list(DISPOSITIONS))
def test_rejects_across_files_and_batches_add_up_and_a_rerun_changes_nothing(
    tmp_path: Path, disposition: str
) -> None:
    catalog = typed_catalog(tmp_path, disposition=disposition)
    settings = duckdb_settings(tmp_path, batch_bytes=SMALL_BATCHES)
    bad = [line for line, _ in BAD_ROWS.values()]
    expected_loaded = expected_rejected = 0
    for index in range(3):
        start = index * 10_000
        # ~8 batches per file; a bad row every 1,000 rows, in different batches
        body = "".join(
            good_rows(n, n + 1_000) + bad[(n // 1_000) % len(bad)] + "\n"
            for n in range(start, start + 10_000, 1_000)
        )
        write_csv(tmp_path / "in" / f"part-{index}.csv", body)
        expected_loaded += 10_000
        expected_rejected += 10

    report = run(RunRequest("typed"), settings, catalog)
    again = run(RunRequest("typed"), settings, catalog)

    assert report.rows_loaded == expected_loaded
    assert report.rows_rejected == expected_rejected
    assert report.rows_read == expected_loaded + expected_rejected
    assert [f.rows_rejected for f in report.files] == [10, 10, 10]
    assert [f.rows_read for f in report.files] == [10_010] * 3
    assert count(settings, "typed") == expected_loaded == distinct_ids(settings)
    assert count(settings, "typed__rejects") == expected_rejected
    per_file = query(
        settings,
        "select _ferry_source_uri, count(*) from ferry.typed__rejects group by 1 order by 1",
    )
    assert [n for _, n in per_file] == [10, 10, 10]
    assert again.status == "skipped"
    assert count(settings, "typed") == expected_loaded
    assert count(settings, "typed__rejects") == expected_rejected


@pytest.mark.parametrize("disposition", list(DISPOSITIONS))
def test_a_newer_generation_replaces_its_rejects_instead_of_adding(
    tmp_path: Path, disposition: str
) -> None:
    catalog = typed_catalog(tmp_path, disposition=disposition)
    settings = duckdb_settings(tmp_path)
    bad = BAD_ROWS["too-few-fields"][0] + "\n"
    a = write_csv(tmp_path / "in" / "a.csv", good_rows(0, 3) + bad + bad)
    write_csv(tmp_path / "in" / "b.csv", good_rows(10, 12) + bad)
    run(RunRequest("typed"), settings, catalog)
    assert (count(settings, "typed"), count(settings, "typed__rejects")) == (5, 3)

    write_csv(a, good_rows(0, 4) + bad)  # one row fixed, one bad row left
    bump_generation(a)
    report = run(RunRequest("typed"), settings, catalog)

    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (5, 4, 1)
    assert ids(settings) == [0, 1, 2, 3, 10, 11]
    per_file = query(
        settings,
        "select _ferry_source_uri, count(*) from ferry.typed__rejects group by 1 order by 1",
    )
    assert [(Path(uri).name, n) for uri, n in per_file] == [("a.csv", 1), ("b.csv", 1)]


def test_more_rejects_than_the_cap_fail_the_run_and_load_nothing_of_it(tmp_path: Path) -> None:
    catalog = typed_catalog(tmp_path, cap=2)
    settings = duckdb_settings(tmp_path)
    bad = BAD_ROWS["int-column"][0] + "\n"
    write_csv(tmp_path / "in" / "a-earlier.csv", good_rows(0, 3) + bad)
    run(RunRequest("typed"), settings, catalog)

    write_csv(tmp_path / "in" / "b-fine.csv", good_rows(10, 13))
    write_csv(tmp_path / "in" / "c-garbage.csv", good_rows(20, 21) + bad * 3)
    with pytest.raises(BadDataError, match=r"c-garbage\.csv: more than 2 rejected rows") as caught:
        run(RunRequest("typed"), settings, catalog)

    assert not caught.value.retriable
    assert failed_report(caught.value)["status"] == "failed"
    assert ids(settings) == [0, 1, 2], "the earlier load is intact, nothing of this run is visible"
    assert count(settings, "typed__rejects") == 1
    (tmp_path / "in" / "c-garbage.csv").unlink()
    retry = run(RunRequest("typed"), settings, catalog)
    assert retry.rows_loaded == 3
    assert ids(settings) == [0, 1, 2, 10, 11, 12]


# --- whole-file faults: the encoding ----------------------------------------------------


NOTE_HEADER = HEADER.replace("\n", ",note\n")


def latin1_first_block(path: Path) -> None:
    row = "1,1.0,2026-01-01,true,2026-01-01T00:00:00Z,café\n"
    path.write_bytes((NOTE_HEADER + row).encode("latin-1"))


def latin1_later_block(path: Path) -> None:
    """Valid UTF-8 for ~1.5 MB (several batches), then one Latin-1 byte."""
    body = good_rows(0, 30_000).replace("Z\n", "Z,plain\n")
    tail = "99999,1.0,2026-01-01,true,2026-01-01T00:00:00Z,café\n"
    path.write_bytes(NOTE_HEADER.encode() + body.encode() + tail.encode("latin-1"))


def utf16_file(path: Path) -> None:
    path.write_bytes((HEADER + good_rows(0, 3)).encode("utf-16"))


ENCODING_FAULTS = {
    "latin-1-in-first-block": latin1_first_block,
    "latin-1-after-several-batches": latin1_later_block,
    "utf-16-read-as-utf-8": utf16_file,
}


@pytest.mark.parametrize(
    ("fault", "mode"),
    [
        ("latin-1-in-first-block", "reject"),
        ("latin-1-after-several-batches", "reject"),
        ("latin-1-after-several-batches", "default"),
        ("utf-16-read-as-utf-8", "reject"),
    ],
    ids=lambda value: str(value),
)
def test_a_wrong_encoding_fails_the_whole_file_in_either_mode(
    tmp_path: Path, fault: str, mode: str
) -> None:
    """Bytes that do not decode are not a bad row: no row boundary can be trusted, so the
    file fails terminally (also with on_bad_rows: reject) and nothing of the run is loaded."""
    catalog = typed_catalog(tmp_path, mode=mode)
    settings = duckdb_settings(tmp_path, batch_bytes=SMALL_BATCHES)
    write_csv(tmp_path / "in" / "a-earlier.csv", good_rows(0, 3))
    run(RunRequest("typed"), settings, catalog)

    write_csv(tmp_path / "in" / "b-fine.csv", good_rows(10, 13))
    ENCODING_FAULTS[fault](tmp_path / "in" / "c-encoded.csv")
    with pytest.raises(BadDataError) as caught:
        run(RunRequest("typed"), settings, catalog)

    message = str(caught.value)
    assert "c-encoded.csv" in message
    assert "encoding" in message or "UTF8" in message
    assert not caught.value.retriable
    assert ids(settings) == [0, 1, 2]
    assert count(settings, "typed__rejects") == 0


def test_the_declared_encoding_reads_the_same_file(tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: latin
            source: {uri: "in/*.csv", csv: {encoding: latin-1}, on_bad_rows: reject}
            destination: {table: latin}
        """,
    )
    (tmp_path / "in").mkdir()
    latin1_first_block(tmp_path / "in" / "a.csv")
    settings = duckdb_settings(tmp_path)
    report = run(RunRequest("latin"), settings, catalog)
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (1, 1, 0)
    assert query(settings, "select id, note from ferry.latin") == [(1, "café")]


# --- on_bad_rows: fail (the default) ---------------------------------------------------


def ragged(n: int) -> str:
    return f"{n},1.0\n"


def wrong_type(n: int) -> str:
    return f"{n},lots,2026-01-01,true,2026-01-01T00:00:00Z\n"


FAIL_FAULTS = {"ragged-row": ragged, "wrong-type": wrong_type}


@pytest.mark.parametrize(
    ("fault", "where"),
    [
        ("ragged-row", "first-batch"),
        ("ragged-row", "after-several-batches"),
        ("wrong-type", "after-several-batches"),
    ],
    ids=lambda value: str(value),
)
def test_fail_mode_fails_the_run_with_nothing_half_loaded(
    tmp_path: Path, fault: str, where: str
) -> None:
    catalog = typed_catalog(tmp_path, mode="default")
    settings = duckdb_settings(tmp_path, batch_bytes=SMALL_BATCHES)
    write_csv(tmp_path / "in" / "a-earlier.csv", good_rows(0, 3))
    run(RunRequest("typed"), settings, catalog)

    write_csv(tmp_path / "in" / "b-fine.csv", good_rows(100, 200))
    before = 5 if where == "first-batch" else 20_000
    write_csv(
        tmp_path / "in" / "c-bad.csv",
        good_rows(1_000, 1_000 + before) + FAIL_FAULTS[fault](999_999) + good_rows(50_000, 50_010),
    )
    with pytest.raises(BadDataError, match=r"c-bad\.csv") as caught:
        run(RunRequest("typed"), settings, catalog)

    assert not caught.value.retriable
    report = failed_report(caught.value)
    assert report["status"] == "failed"
    if where == "after-several-batches":
        rows_read = report["rows_read"]
        assert isinstance(rows_read, int) and rows_read > 100 + SMALL_BATCHES // 60
    assert ids(settings) == [0, 1, 2], "neither the bad file nor its run-mates are visible"
    assert count(settings, "typed__rejects") == 0
    (tmp_path / "in" / "c-bad.csv").unlink()
    retry = run(RunRequest("typed"), settings, catalog)
    assert retry.rows_loaded == 100
    assert count(settings, "typed") == 103 == distinct_ids(settings)


def test_truncated_gzip_is_bad_data_and_loads_nothing(tmp_path: Path) -> None:
    catalog = typed_catalog(tmp_path, mode="reject")
    settings = duckdb_settings(tmp_path)
    whole = gzip.compress((HEADER + good_rows(0, 5_000)).encode())
    (tmp_path / "in" / "a.csv.gz").write_bytes(whole[: len(whole) // 2])
    write_csv(tmp_path / "in" / "b.csv", good_rows(10_000, 10_002))
    with pytest.raises(BadDataError, match=r"a\.csv\.gz.*(gzip|compress)") as caught:
        run(RunRequest("typed"), settings, catalog)
    assert not caught.value.retriable
    assert count(settings, "typed") == 0
    assert count(settings, "typed__rejects") == 0


def test_jsonl_wrong_type_in_a_declared_column_is_rejected(tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: events
            source: {uri: "in/*.jsonl", columns: {id: int64, n: int64}, on_bad_rows: reject}
            destination: {table: events}
        """,
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(
        '{"id": 1, "n": 2}\n{"id": 2, "n": "lots"}\n{"id": 3, "n": 4}\n', encoding="utf-8"
    )
    settings = duckdb_settings(tmp_path)
    report = run(RunRequest("events"), settings, catalog)
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (3, 2, 1)
    assert ids(settings, "events") == [1, 3]
    assert count(settings, "events__rejects") == 1


def test_a_typed_reject_after_a_ragged_row_names_its_own_row(tmp_path: Path) -> None:
    catalog = typed_catalog(tmp_path)
    settings = duckdb_settings(tmp_path)
    ragged_line, typed_line = BAD_ROWS["too-few-fields"][0], BAD_ROWS["int-column"][0]
    write_csv(tmp_path / "in" / "a.csv", good_rows(0, 2) + ragged_line + "\n" + typed_line + "\n")
    run(RunRequest("typed"), settings, catalog)
    rows = query(settings, "select row from ferry.typed__rejects where \"column\" = 'id'")
    assert rows == [(4,)], "data row 4: two good rows, the ragged one, then this one"
    ragged = query(settings, 'select row from ferry.typed__rejects where "column" is null')
    assert ragged == [(3,)], "the ragged row is data row 3"


def test_a_ragged_row_deep_in_a_block_is_named_by_its_line(tmp_path: Path) -> None:
    """Arrow's threaded parser does not number rows: the error said "after data row 0" for a
    ragged row thousands of rows into the first block."""
    catalog = typed_catalog(tmp_path, mode="default")
    settings = duckdb_settings(tmp_path)
    write_csv(tmp_path / "in" / "a.csv", good_rows(0, 4_500) + BAD_ROWS["too-few-fields"][0] + "\n")
    with pytest.raises(BadDataError) as caught:
        run(RunRequest("typed"), settings, catalog)
    assert "at line 4502" in caught.value.message, caught.value.message
    assert "data row 0" not in caught.value.message


def test_jsonl_bad_value_after_batches_already_loaded_is_rejected_without_duplicates(
    tmp_path: Path,
) -> None:
    """The line-by-line fallback takes over after the rows Arrow already handed on."""
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: events
            source: {uri: "in/*.jsonl", columns: {id: int64, n: int64}, on_bad_rows: reject}
            destination: {table: events}
        """,
    )
    (tmp_path / "in").mkdir()
    good = "".join(f'{{"id": {i}, "n": {i}}}\n' for i in range(30_000))
    tail = "".join(f'{{"id": {i}, "n": {i}}}\n' for i in range(30_001, 30_010))
    (tmp_path / "in" / "a.jsonl").write_text(
        good + '{"id": 30000, "n": "lots"}\nnot json\n' + tail, encoding="utf-8"
    )
    settings = duckdb_settings(tmp_path, batch_bytes=64 << 10)
    report = run(RunRequest("events"), settings, catalog)
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (30_011, 30_009, 2)
    assert ids(settings, "events") == [*range(30_000), *range(30_001, 30_010)]
    assert count(settings, "events__rejects") == 2
