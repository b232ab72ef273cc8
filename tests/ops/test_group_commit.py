"""Group commit (app/ops/group_commit.py): pushes of one pipeline that arrive while a run of
it is going share its next run, and each is answered with its own object's outcome.

The interleaving is forced, never timed: the first run waits until the other pushes are
queued behind it (a bounded wait, only a guard against a hang)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.ops.group_commit import GroupCommit, groupable, own_report
from app.ops.service import RunService
from app.run.report import FileReport, RunReport
from app.run.request import RunRequest
from core.errors import BadDataError, DestinationUnavailableError, FerryError
from core.settings import Settings
from tests.emulators import BigQueryEmulator, GcsEmulator
from tests.helpers import duckdb_settings, query, write_catalog

HANG_GUARD_S = 120.0


def push(uri: str, generation: int = 1, pipeline: str = "people") -> RunRequest:
    return RunRequest(pipeline=pipeline, source_uri=uri, generation=generation, trigger="pubsub")


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, "the pushes never queued"
        time.sleep(0.01)


def report_of(request: RunRequest, uris: list[str]) -> RunReport:
    report = RunReport(request.run_id, request.pipeline, request.trigger, "duckdb", "ferry")
    report.files = [FileReport(uri, 1, 10, rows_read=3, rows_loaded=3) for uri in uris]
    report.rows_loaded = 3 * len(uris)
    report.load_ids = ["1"]
    return report


class Recorder:
    """A fake runner: the first run holds until `expected` pushes wait behind it."""

    def __init__(self, expected: int, bad: str | None = None) -> None:
        self.expected = expected
        self.bad = bad
        self.groups: list[list[str]] = []
        self.commit: GroupCommit | None = None
        self._first = True

    def __call__(
        self, request: RunRequest, members: list[RunRequest], loading: Callable[[], None]
    ) -> RunReport:
        uris = [m.source_uri or "" for m in members]
        self.groups.append(uris)
        if self._first:
            self._first = False
            commit = self.commit
            assert commit is not None
            wait_until(lambda: commit.waiting("people") == self.expected)
        if self.bad in uris:
            raise BadDataError(f"{self.bad}: line 2 has 3 fields", pipeline="people")
        return report_of(request, uris)


def test_pushes_that_wait_share_one_run_and_each_gets_its_own_part() -> None:
    recorder = Recorder(expected=5)
    commit = recorder.commit = GroupCommit(recorder)
    uris = [f"gs://b/in/{n}.csv" for n in range(6)]

    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(commit.submit, push(uris[0]))
        wait_until(lambda: recorder.groups != [])
        rest = [pool.submit(commit.submit, push(uri)) for uri in uris[1:]]
        reports = [first.result(), *(future.result() for future in rest)]

    assert recorder.groups[0] == [uris[0]]
    assert sorted(recorder.groups[1]) == sorted(uris[1:]), "the waiting pushes: one run"
    assert len(recorder.groups) == 2
    for uri, report in zip(uris, reports, strict=True):
        assert [f.uri for f in report.files] == [uri], "its own object only"
        assert report.rows_loaded == 3
    assert len({r.run_id for r in reports[1:]}) == 1, "the shared run"


def test_one_bad_object_fails_only_its_own_push() -> None:
    uris = [f"gs://b/in/{n}.csv" for n in range(5)]
    recorder = Recorder(expected=4, bad=uris[2])
    commit = recorder.commit = GroupCommit(recorder)

    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(commit.submit, push(uris[0]))
        wait_until(lambda: recorder.groups != [])
        rest = {uri: pool.submit(commit.submit, push(uri)) for uri in uris[1:]}
        first.result()
        with pytest.raises(BadDataError):
            rest[uris[2]].result()
        for uri in (uris[1], uris[3], uris[4]):
            assert [f.uri for f in rest[uri].result().files] == [uri]

    # the group failed terminally, then ran one object per run
    assert sorted(len(group) for group in recorder.groups[2:]) == [1, 1, 1, 1]


def test_a_retriable_failure_is_every_members_own() -> None:
    calls: list[int] = []

    def fail(
        request: RunRequest, members: list[RunRequest], loading: Callable[[], None]
    ) -> RunReport:
        calls.append(len(members))
        error = DestinationUnavailableError("Too many DML statements outstanding")
        error.report = report_of(request, [m.source_uri or "" for m in members])
        raise error

    commit = GroupCommit(fail)
    with pytest.raises(DestinationUnavailableError) as raised:
        commit.submit(push("gs://b/in/a.csv"))
    assert calls == [1]
    assert isinstance(raised.value, FerryError) and raised.value.retriable


def test_one_generation_per_uri_in_a_group() -> None:
    recorder = Recorder(expected=3)
    commit = recorder.commit = GroupCommit(recorder)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(commit.submit, push("gs://b/in/a.csv", 1))
        wait_until(lambda: recorder.groups != [])
        later = [
            pool.submit(commit.submit, push("gs://b/in/a.csv", 2)),
            pool.submit(commit.submit, push("gs://b/in/a.csv", 3)),
            pool.submit(commit.submit, push("gs://b/in/b.csv", 1)),
        ]
        first.result()
        for future in later:
            future.result()
    assert [len(group) for group in recorder.groups] == [1, 2, 1]


def test_only_single_object_pushes_are_grouped() -> None:
    assert groupable(push("gs://b/a.csv"))
    assert not groupable(RunRequest("people", source_uri="gs://b/a.csv", generation=1))
    assert not groupable(
        RunRequest("people", "gs://b/a.csv", 1, trigger="pubsub", object_deleted=True)
    )
    assert not groupable(RunRequest("people", "gs://b/a.csv", None, trigger="pubsub"))
    shared = report_of(push("x"), ["gs://b/a.csv", "gs://b/b.csv"])
    shared.files[1].status = "already_loaded"
    assert own_report(shared, push("gs://b/b.csv")).status == "skipped"


# --- through the runner, on DuckDB and on the BigQuery emulator -----------------------------


def upload(gcs: GcsEmulator, bucket: str, name: str, text: str) -> int:
    gcs.client().bucket(bucket).blob(name).upload_from_string(text)
    stored = gcs.client().bucket(bucket).get_blob(name)
    assert stored is not None
    return int(stored.generation)


def bigquery_settings(
    tmp_path: Path, emulator: BigQueryEmulator, gcs: GcsEmulator, dataset: str
) -> Settings:
    return Settings(
        destination="bigquery",
        bigquery_project=emulator.project,
        bigquery_dataset=dataset,
        bigquery_emulator_host=emulator.endpoint,
        storage_emulator_host=gcs.endpoint,
        data_dir=tmp_path / "data",
        pipelines_file=tmp_path / "pipelines.yaml",
        gcs_project="test-project",
    )


@pytest.mark.parametrize("engine", ["duckdb", "bigquery"])
def test_concurrent_pushes_load_every_row_once_and_answer_each(
    engine: str,
    tmp_path: Path,
    gcs_env: GcsEmulator,
    unique_name: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = unique_name
    gcs_env.client().create_bucket(bucket)
    catalog = write_catalog(
        tmp_path,
        f"""
        pipelines:
          - name: people
            source: {{uri: "gs://{bucket}/in/*.csv"}}
            transform: [{{cast: {{id: int64}}}}]
            destination: {{table: people}}
        """,
    )
    if engine == "duckdb":
        settings = duckdb_settings(
            tmp_path, gcs_project="test-project", storage_emulator_host=gcs_env.endpoint
        )
    else:
        monkeypatch.setenv("DATA_WRITER__DISABLE_COMPRESSION", "true")
        emulator: BigQueryEmulator = request.getfixturevalue("bigquery_env")
        settings = bigquery_settings(tmp_path, emulator, gcs_env, unique_name)
    objects = []
    for n in range(6):
        rows = "".join(f"{n * 10 + i},p{n}-{i}\n" for i in range(4))
        text = "id,name\n" + (rows if n != 3 else "1,a\n2,b,c\n")  # object 3: bad data
        name = f"in/{n}.csv"
        objects.append((f"gs://{bucket}/{name}", upload(gcs_env, bucket, name, text)))
    service = RunService(settings, catalog)
    commit = service._groups
    assert commit is not None
    original = commit._execute
    held = threading.Event()

    def first_waits(
        group: RunRequest, members: list[RunRequest], loading: Callable[[], None]
    ) -> RunReport:
        if not held.is_set():
            held.set()
            wait_until(lambda: commit.waiting("people") == len(objects) - 1)
        return original(group, members, loading)

    monkeypatch.setattr(commit, "_execute", first_waits)

    def execute(obj: tuple[str, int]) -> RunReport | FerryError:
        try:
            report = service.execute(push(*obj))
        except FerryError as error:
            return error
        assert isinstance(report, RunReport)
        return report

    with ThreadPoolExecutor(len(objects)) as pool:
        first = pool.submit(execute, objects[0])
        wait_until(held.is_set)
        rest = [pool.submit(execute, obj) for obj in objects[1:]]
        answers = [first.result(), *(future.result() for future in rest)]

    for n, ((uri, _), answer) in enumerate(zip(objects, answers, strict=True)):
        if n == 3:
            assert isinstance(answer, BadDataError), "only the bad object's push fails"
            continue
        assert isinstance(answer, RunReport), answer
        assert [(f.uri, f.status, f.rows_loaded) for f in answer.files] == [(uri, "loaded", 4)]
    assert sorted(_loaded(engine, settings, request)) == sorted(
        n * 10 + i for n in range(6) if n != 3 for i in range(4)
    ), "every row of the good objects exactly once, none of the bad one"
    again = service.execute(push(*objects[1]))
    assert isinstance(again, RunReport) and again.status == "skipped"


def _loaded(engine: str, settings: Settings, request: pytest.FixtureRequest) -> list[Any]:
    if engine == "duckdb":
        return [row[0] for row in query(settings, "select id from ferry.people")]
    emulator: BigQueryEmulator = request.getfixturevalue("bigquery_env")
    table = f"`{emulator.project}.{settings.bigquery_dataset}.people`"
    return [row.id for row in emulator.client().query(f"select id from {table}").result()]


def test_a_min_interval_spaces_a_pipelines_runs() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def execute(
        request: RunRequest, members: list[RunRequest], loading: Callable[[], None]
    ) -> RunReport:
        now[0] += 2.0  # the run takes two (fake) seconds
        return report_of(request, [m.source_uri or "" for m in members])

    commit = GroupCommit(execute, min_interval=60.0, clock=lambda: now[0], sleep=sleep)
    commit.submit(push("gs://b/in/a.csv"))
    commit.submit(push("gs://b/in/b.csv"))
    commit.submit(push("gs://b/in/c.csv", pipeline="other"))  # its own pipeline: no wait
    assert slept == [58.0], "the second run of `people` starts 60 s after the first"


def test_the_next_group_reads_while_the_one_before_loads_and_no_more_start() -> None:
    """Pipelined: once a group goes to load, the pushes waiting behind it start the next group
    before that load commits; a third waits while the second has not gone to load."""
    uris = [f"gs://b/in/{n}.csv" for n in range(3)]
    started: list[list[str]] = []
    second_started, third_queued, release_second = (threading.Event() for _ in range(3))

    def execute(
        request: RunRequest, members: list[RunRequest], loading: Callable[[], None]
    ) -> RunReport:
        group = [m.source_uri or "" for m in members]
        started.append(group)
        if group == [uris[0]]:
            loading()
            # still before its commit: the second group must start meanwhile
            assert second_started.wait(HANG_GUARD_S), "the next group waited for this commit"
            assert third_queued.wait(HANG_GUARD_S)
        elif group == [uris[1]]:
            second_started.set()
            assert release_second.wait(HANG_GUARD_S)
            loading()
        return report_of(request, group)

    commit = GroupCommit(execute)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(commit.submit, push(uris[0]))
        wait_until(lambda: started != [])
        second = pool.submit(commit.submit, push(uris[1]))
        wait_until(second_started.is_set)
        third = pool.submit(commit.submit, push(uris[2]))
        wait_until(lambda: commit.waiting("people") == 1)
        assert len(started) == 2, "one group reading at a time"
        third_queued.set()
        first.result()
        release_second.set()
        reports = [first.result(), second.result(), third.result()]

    assert started == [[uris[0]], [uris[1]], [uris[2]]]
    assert [[f.uri for f in r.files] for r in reports] == [[uri] for uri in uris]


def test_a_push_that_arrives_while_the_commit_ahead_runs_joins_the_next_group() -> None:
    """Just in time: once the pipeline's groups are timed (reads short, commits long), the
    next group's leader waits while the group ahead commits, and pushes that arrive
    meanwhile share its run instead of waiting for a later one. Each is answered with its
    own object. The clock is fake; the wait ends when the group ahead does."""
    now = [0.0]
    uris = [f"gs://b/in/{n}.csv" for n in range(5)]
    started: list[list[str]] = []
    second_loading, release_second = threading.Event(), threading.Event()

    def execute(
        request: RunRequest, members: list[RunRequest], loading: Callable[[], None]
    ) -> RunReport:
        group = [m.source_uri or "" for m in members]
        started.append(group)
        now[0] += 1.0  # a read of one (fake) second
        loading()
        if group == [uris[0]]:
            now[0] += 100.0  # then a commit of a hundred: the pipeline is timed
        elif group == [uris[1]]:
            second_loading.set()
            assert release_second.wait(HANG_GUARD_S)
        return report_of(request, group)

    commit = GroupCommit(execute, clock=lambda: now[0])
    commit.submit(push(uris[0]))
    with ThreadPoolExecutor(4) as pool:
        second = pool.submit(commit.submit, push(uris[1]))
        assert second_loading.wait(HANG_GUARD_S)
        # the second group commits: the next one's leader waits, the others queue behind it
        later = [pool.submit(commit.submit, push(uri)) for uri in uris[2:]]
        wait_until(lambda: commit.waiting("people") == 3)
        assert len(started) == 2, "the next group waits for its turn"
        release_second.set()
        reports = [second.result(), *(future.result() for future in later)]

    assert started[:2] == [[uris[0]], [uris[1]]]
    assert sorted(started[2]) == sorted(uris[2:]), "the pushes that arrived: one run"
    assert len(started) == 3
    assert [[f.uri for f in r.files] for r in reports] == [[uri] for uri in uris[1:]]
