"""app/run/plan.py alone: which objects a file run reads, which the ledger says are loaded,
and how the load commits. Local files on DuckDB; nothing is extracted."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.run.plan import FilePlan, plan_files
from app.run.request import ObjectRef, RunRequest
from app.run.runner import run
from core.errors import RequestError, SourceNotFoundError
from core.settings import Settings
from core.spec import FilesSource
from tests.helpers import duckdb_settings, write_catalog
from tests.run.context import run_context

PIPELINES = """
pipelines:
  - {name: people, source: {uri: "data/*.csv"}, destination: {table: people}}
  - {name: merged, source: {uri: "data/*.csv"},
     destination: {table: merged, write_disposition: merge, primary_key: [id]}}
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "data").mkdir()
    for name in ("a", "b"):
        (tmp_path / "data" / f"{name}.csv").write_text("id\n1\n", encoding="utf-8")
    return duckdb_settings(tmp_path, run_log=False)


def plan(settings: Settings, request: RunRequest) -> tuple[FilePlan, list[tuple[str, str]]]:
    catalog = write_catalog(settings.pipelines_file.parent, PIPELINES)
    with run_context(request, settings, catalog) as context:
        source = context.spec.source
        assert isinstance(source, FilesSource)
        planned = plan_files(context, source, None)
        files = [(Path(f.uri).name, str(f.status)) for f in context.report.files]
    return planned, files


def pending(planned: FilePlan) -> list[str]:
    return [Path(p.uri).name for p, _ in planned.pending]


def test_an_append_on_duckdb_plans_every_object_under_a_commit_guard(settings: Settings) -> None:
    planned, files = plan(settings, RunRequest("people"))
    assert pending(planned) == ["a.csv", "b.csv"]
    assert files == [("a.csv", "loaded"), ("b.csv", "loaded")]
    assert planned.guard is not None and not planned.keyed_by_object


def test_a_merge_pipeline_commits_keyed_by_object(settings: Settings) -> None:
    planned, _ = plan(settings, RunRequest("merged"))
    assert planned.guard is None and planned.keyed_by_object


def test_objects_the_ledger_holds_are_reported_and_not_planned(settings: Settings) -> None:
    catalog = write_catalog(settings.pipelines_file.parent, PIPELINES)
    run(RunRequest("people", source_uri="data/a.csv"), settings, catalog)
    planned, files = plan(settings, RunRequest("people"))
    assert pending(planned) == ["b.csv"]
    assert files == [("a.csv", "already_loaded"), ("b.csv", "loaded")]


def test_an_object_named_twice_is_planned_once(settings: Settings) -> None:
    ref = ObjectRef("data/a.csv", None)
    planned, files = plan(settings, RunRequest("people", objects=(ref, ref)))
    assert pending(planned) == ["a.csv"]
    assert files == [("a.csv", "loaded"), ("a.csv", "already_loaded")]


@pytest.mark.parametrize(
    ("request_", "error", "match"),
    [
        (RunRequest("people", source_uri="../secrets.csv"), RequestError, "outside"),
        (
            RunRequest("people", source_uri="data/gone.csv", generation=3),
            SourceNotFoundError,
            "gone.csv",
        ),
        (
            RunRequest("people", source_uri="data/a.csv", object_deleted=True),
            RequestError,
            "generation",
        ),
    ],
    ids=["outside-the-pattern", "missing-generation", "delete-without-generation"],
)
def test_requests_it_cannot_plan_are_refused(
    settings: Settings, request_: RunRequest, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        plan(settings, request_)
