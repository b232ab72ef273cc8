"""Object selection, pure or on a temp folder: narrowing, the re-check, generations."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.run.report import RunReport
from app.run.selection import admitted, check_generation, narrowed_uri, requested_generation
from core.errors import RequestError, SourceNotFoundError
from sources.files import SourceObject, resolve_pattern


def report() -> RunReport:
    return RunReport("r", "p", "http", "duckdb", "ferry")


@pytest.mark.parametrize(
    ("source", "narrowed"),
    [
        ("gs://b/raw/a.csv", "gs://b/raw/a.csv"),
        ("gs://b/raw/2026-*.csv", "gs://b/raw/2026-*.csv"),
    ],
)
def test_a_source_inside_the_pattern_is_kept(tmp_path: Path, source: str, narrowed: str) -> None:
    assert narrowed_uri("p", "gs://b/raw/*.csv", source, tmp_path) == narrowed


@pytest.mark.parametrize(
    "source",
    ["gs://b/raw-x/a.csv", "gs://c/raw/a.csv", "gs://b/raw/../a.csv", "gs://b/raw%2fx/**", "x.csv"],
)
def test_a_source_outside_the_pattern_is_a_request_error(tmp_path: Path, source: str) -> None:
    with pytest.raises(RequestError, match="outside"):
        narrowed_uri("p", "gs://b/raw/*.csv", source, tmp_path)


def test_local_sources_resolve_against_the_pipelines_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    pattern = resolve_pattern("in/*.csv", tmp_path)
    assert pattern == f"{tmp_path.resolve()}/in/*.csv"
    assert narrowed_uri("p", pattern, "in/a.csv", tmp_path) == f"{tmp_path.resolve()}/in/a.csv"
    for outside in ("in/../a.csv", "in_private/a.csv", "/etc/passwd"):
        with pytest.raises(RequestError):
            narrowed_uri("p", pattern, outside, tmp_path)


def test_listed_objects_are_re_checked_and_named_ones_refused() -> None:
    objects = [SourceObject("gs://b/raw/a.csv", 1, 1), SourceObject("gs://b/raw/sub/x.csv", 1, 1)]
    kept = admitted("p", "gs://b/raw/*.csv", objects, named=False)
    assert [obj.uri for obj in kept] == ["gs://b/raw/a.csv"]
    with pytest.raises(RequestError, match=r"sub/x\.csv"):
        admitted("p", "gs://b/raw/*.csv", objects, named=True)


def test_a_symlink_out_of_the_folder_is_not_admitted(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "secret.csv").write_text("x\n")
    (tmp_path / "in" / "link.csv").symlink_to(tmp_path / "secret.csv")
    pattern = resolve_pattern("in/*.csv", tmp_path)
    link = SourceObject(f"{tmp_path.resolve()}/in/link.csv", 1, 1)
    assert admitted("p", pattern, [link], named=False) == []


def test_generations() -> None:
    live = SourceObject("gs://b/a.csv", 5, 10)
    assert requested_generation(live, None, report()) is live
    assert requested_generation(live, 5, report()) is live
    older = report()
    assert requested_generation(live, 4, older) is None
    assert [(f.status, f.generation) for f in older.files] == [("superseded", 4)]
    # generations only grow: one above the live one never existed (terminal, never a nack loop)
    with pytest.raises(SourceNotFoundError, match="has no generation 6"):
        requested_generation(live, 6, report())


def test_generations_that_cannot_exist() -> None:
    now_us = int(time.time() * 1e6)
    check_generation("p", "gs://b/a.csv", now_us)
    check_generation("p", "gs://b/a.csv", now_us * 1000, emulated_gcs=True)  # nanoseconds
    check_generation("p", "/data/a.csv", time.time_ns())  # local files: st_mtime_ns
    for uri, generation in (("gs://b/a.csv", now_us * 1000), ("/data/a.csv", 9 * 10**18)):
        with pytest.raises(RequestError, match="cannot exist"):
            check_generation("p", uri, generation)
