"""A JSON-lines file holding one huge line (issue 14: a 1.3 MiB gzip object with one 300 MiB
line ran for 12 minutes at +590 MiB). The line-by-line reader behind on_bad_rows: reject is
linear and caps a line at the read block: a longer line is a rejected row, and without
rejects it fails the file."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import pytest

from app.run.runner import RunRequest, run
from core.errors import BadDataError
from core.spec import FilesSource
from sources.files import list_objects, read_batches
from sources.files.rejects import Rejects
from tests.helpers import count, duckdb_settings, query, write_catalog

HUGE = 24 << 20
"""The long line's padding: 24 of the smallest read block (1 MiB), a few KiB gzipped."""
LONG_LINE_HEAD = b'{"id": 3, "pad": "'
LONG_LINE_BYTES = len(LONG_LINE_HEAD) + HUGE + len(b'"}')


def write_file(folder: Path) -> Path:
    """Rows 1 and 4 are good; row 2 has a bad type (so the reader falls back to line by line);
    row 3 is valid JSON but one huge line."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=6) as out:
        out.write(b'{"id": 1}\n{"id": "two"}\n' + LONG_LINE_HEAD)
        block = b"x" * (1 << 20)
        for _ in range(HUGE // len(block)):
            out.write(block)
        out.write(b'"}\n{"id": 4}\n')
    return path


def catalog_text(mode: str, undeclared: str = "infer") -> str:
    return f"""
    pipelines:
      - name: events
        source:
          uri: "in/*.jsonl.gz"
          columns: {{id: int64}}
          on_bad_rows: {mode}
          undeclared_columns: {undeclared}
        destination: {{table: events}}
    """


@pytest.mark.parametrize("undeclared", ["infer", "ignore"], ids=["arrow", "duckdb"])
def test_a_huge_line_is_a_rejected_row_and_the_rest_loads(tmp_path: Path, undeclared: str) -> None:
    write_file(tmp_path / "in")
    catalog = write_catalog(tmp_path, catalog_text("reject", undeclared))
    settings = duckdb_settings(tmp_path, batch_bytes=1 << 20)

    report = run(RunRequest("events"), settings, catalog)

    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (4, 2, 2)
    assert query(settings, "select id from ferry.events order by id") == [(1,), (4,)]
    reasons = query(settings, "select reason, length(raw) from ferry.events__rejects order by 1")
    assert len(reasons) == 2
    long_line = [(reason, size) for reason, size in reasons if "longer than" in reason]
    assert len(long_line) == 1 and long_line[0][1] <= 1000, reasons
    assert f"line is {LONG_LINE_BYTES} bytes" in long_line[0][0]


def test_a_huge_line_fails_the_file_when_rejects_are_off(tmp_path: Path) -> None:
    write_file(tmp_path / "in")
    catalog = write_catalog(tmp_path, catalog_text("fail"))
    settings = duckdb_settings(tmp_path, batch_bytes=1 << 20)

    with pytest.raises(BadDataError) as raised:
        run(RunRequest("events"), settings, catalog)

    assert not raised.value.retriable
    assert count(settings, "events") == 0 and count(settings, "events__rejects") == 0


def test_the_line_reader_never_holds_the_huge_line(tmp_path: Path) -> None:
    """Memory stays near the read block, not the line (before: several copies of it)."""
    path = write_file(tmp_path / "in")
    [obj] = list_objects(str(path), base_dir=path.parent, storage_client=lambda: None)
    source = FilesSource.model_validate(
        {"uri": "in/*.jsonl.gz", "columns": {"id": "int64"}, "on_bad_rows": "reject"}
    )
    rejects = Rejects(obj.uri, 10)
    tracemalloc.start()
    try:
        batches = list(
            read_batches(
                obj, source, storage_client=lambda: None, batch_bytes=1 << 20, rejects=rejects
            )
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(batch.num_rows for batch in batches) == 2  # rows 1 and 4
    assert len(rejects.rows) == 2
    assert [row.row for row in rejects.rows if "longer than" in row.reason] == [3]
    assert peak < HUGE // 4, f"peak Python memory {peak} bytes for a {HUGE}-byte line"
