"""Group commit: pushes that arrive together for the same pipeline share one run.

On BigQuery a run costs the same dozen round trips and one load job whether it loads one
object or a hundred, and mutating DML is queued per table. So a push does not start a run of
its own while another run of its pipeline is going in this instance: it waits, and the next
run takes every object that waited (one per URI, up to `group_commit_max_objects`). Each
request is answered after that shared commit, with its own object's part of the report, and
so with its own ack or nack.

The first push of an idle pipeline runs at once (no added wait): groups form only from the
pushes that arrive while a run is going, which is when they pay. Groups are pipelined: once
a group has read and converted its objects and goes to load, the pushes waiting behind it
start the next group, which reads and converts while the first one's load commits (on
BigQuery seconds of waiting on jobs). At most IN_FLIGHT groups of a pipeline run at once,
one of them before its load; their commits still take turns on the table's writer
(app/destinations/writers.py), which is what keeps concurrent loads of a table exact.

The next group starts just in time rather than at once: when the group ahead of it holds or
waits for the writer, its leader waits until that commit is about a read's time from done
(both timed on the pipeline's last groups), and the pushes that arrive meanwhile (those the
commit before answered) join it. Reading earlier would only wait at the writer, and the
group would be a third of the pushes at hand instead of half.

With `min_interval` set, a pipeline's runs start at least that many seconds apart, and the
pushes of the interval share the next one: a bound on load jobs per table per day (BigQuery
allows 1,500) at the price of that much latency.

A group that fails for one object's bad data (a terminal error) is run again one object per
run, so only that object's request fails; a retriable failure (the destination, a quota) is
every member's, and each is nacked and redelivered.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from app.run.report import RunReport
from app.run.request import ObjectRef, RunRequest
from core.errors import FerryError, ModelFailedError, ModelUnavailableError, classify

log = logging.getLogger("ferry.group_commit")

GROUPED_TRIGGERS = ("pubsub", "eventarc")


def groupable(request: RunRequest) -> bool:
    """A push of one object generation, nothing else asked of the run."""
    return (
        request.trigger in GROUPED_TRIGGERS
        and request.source_uri is not None
        and request.generation is not None
        and not request.object_deleted
        and not request.objects
        and request.idempotency_key is None
        and request.replay is None
        and request.models is None
        and request.shard_count == 1
        and not request.params
    )


@dataclass
class _Flight:
    """A group of a pipeline in flight, timed for the next group's start."""

    loading_at: float | None = None
    """When it went to load (then it holds or waits for the table's writer)."""
    ended: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Pace:
    """How long a pipeline's last group took to read and to commit."""

    reads: deque[float] = field(default_factory=lambda: deque(maxlen=3))
    """Seconds from a group's start to its load, of the last groups (the longest counts: a
    read that ends after the commit ahead leaves the writer idle)."""
    commit: float | None = None
    """Seconds from a group's turn at the writer (its load, or the end of the one before it,
    whichever is later) to its end."""
    last_end: float | None = None
    """When the last group that went to load ended."""


@dataclass
class _Member:
    request: RunRequest
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    finished: bool = False
    report: RunReport | None = None
    error: BaseException | None = None


Execute = Callable[[RunRequest, list[RunRequest], Callable[[], None]], RunReport]
"""Runs one request (the group's, or a member's alone) for the members listed, calling the
third argument when the run goes to load; raises."""

READ_MARGIN = 1.5
"""The next group starts when the commit ahead is this many of the last reads' longest from
done: a larger group reads longer, and a writer left idle costs more than a smaller group."""

IN_FLIGHT = 2
"""Groups of one pipeline running at once: one reading while the one before it loads. Two
is also the number of idle dlt pipelines an instance keeps per pipeline (KEPT_PER_PIPELINE):
a third at once would set up a pipeline of its own each time."""


class GroupCommit:
    def __init__(
        self,
        execute: Execute,
        max_objects: int = 500,
        min_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._execute = execute
        self._max_objects = max(1, max_objects)
        self._min_interval = min_interval
        """Seconds from one run's start to the next of the same pipeline: at most
        86,400 / min_interval runs (load jobs per table) a day, whatever the arrival rate."""
        self._clock, self._sleep = clock, sleep
        self._started: dict[str, float] = {}
        self._guard = threading.Lock()
        self._pending: dict[str, list[_Member]] = {}
        self._in_flight: dict[str, int] = {}
        """Groups of a pipeline running (at most IN_FLIGHT)."""
        self._reading: set[str] = set()
        """Pipelines with a group that has not gone to load yet (at most one each)."""
        self._flights: dict[str, list[_Flight]] = {}
        self._pace: dict[str, _Pace] = {}

    def waiting(self, pipeline: str) -> int:
        """Pushes of `pipeline` waiting for the next group (not those in the running one)."""
        with self._guard:
            return len(self._pending.get(pipeline, []))

    def submit(self, request: RunRequest) -> RunReport:
        """This request's own report, once the run that carried it committed; raises its
        own error otherwise."""
        member = _Member(request)
        key = request.pipeline
        with self._guard:
            self._pending.setdefault(key, []).append(member)
            self._start_next(key)
        while not member.finished:
            if member.lead:
                member.lead = False
                self._run_next_group(key, member)
            else:
                member.wake.wait()
                member.wake.clear()
        if member.error is not None:
            raise member.error
        assert member.report is not None
        return member.report

    def _start_next(self, key: str) -> None:
        """The longest waiting push leads the next group, if one may start now (the caller
        holds the guard)."""
        waiting = self._pending.get(key)
        if not waiting or key in self._reading or self._in_flight.get(key, 0) >= IN_FLIGHT:
            return
        self._reading.add(key)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        waiting[0].lead = True
        waiting[0].wake.set()

    def _run_next_group(self, key: str, leader: _Member) -> None:
        if self._min_interval > 0:
            # the leader waits out the interval; pushes arriving meanwhile join its group
            last = self._started.get(key)
            if last is not None:
                wait = last + self._min_interval - self._clock()
                if wait > 0:
                    self._sleep(wait)
            self._started[key] = self._clock()
        self._wait_for_turn(key)
        with self._guard:
            waiting = self._pending.get(key, [])
            group: list[_Member] = []
            later: list[_Member] = []
            uris: set[str | None] = set()
            for member in [leader, *(m for m in waiting if m is not leader)]:
                uri = member.request.source_uri
                # one generation per URI in a run: a later one waits for the next group
                if uri in uris or len(group) >= self._max_objects:
                    later.append(member)
                else:
                    group.append(member)
                    uris.add(uri)
            self._pending[key] = later
            flight = _Flight()
            self._flights.setdefault(key, []).append(flight)
        started = self._clock()
        read = False

        def loading() -> None:
            """The group goes to load: the pushes waiting behind it may start theirs."""
            nonlocal read
            with self._guard:
                if not read:
                    read = True
                    flight.loading_at = self._clock()
                    self._pace.setdefault(key, _Pace()).reads.append(flight.loading_at - started)
                    self._reading.discard(key)
                    self._start_next(key)

        succeeded = False
        try:
            self._run_group(group, loading)
            succeeded = all(member.error is None for member in group)
        finally:
            with self._guard:
                for member in group:
                    member.finished = True
                    member.wake.set()
                if not read:  # it ended before its load (nothing new, or a failure)
                    read = True
                    self._reading.discard(key)
                self._ended(key, flight, timed=succeeded)
                self._in_flight[key] -= 1
                if not self._in_flight[key]:
                    del self._in_flight[key]
                self._start_next(key)
                if not self._pending.get(key):
                    self._pending.pop(key, None)

    def _wait_for_turn(self, key: str) -> None:
        """While the group ahead holds or waits for the writer, wait until its commit is a
        read's time from done (or it ends): the pushes arriving meanwhile join this group."""
        with self._guard:
            pace = self._pace.get(key)
            ahead = [f for f in self._flights.get(key, []) if f.loading_at is not None]
            if pace is None or not pace.reads or pace.commit is None or not ahead:
                return
            flight = ahead[-1]
            assert flight.loading_at is not None
            turn = max(flight.loading_at, pace.last_end or flight.loading_at)
            wait = turn + pace.commit - READ_MARGIN * max(pace.reads) - self._clock()
            wait = min(wait, pace.commit)
        if wait > 0:
            flight.ended.wait(wait)

    def _ended(self, key: str, flight: _Flight, *, timed: bool) -> None:
        """A group of `key` ended (the caller holds the guard): time its commit."""
        flight.ended.set()
        self._flights[key].remove(flight)
        if not self._flights[key]:
            del self._flights[key]
        if flight.loading_at is None:
            return  # it never went to the writer
        now = self._clock()
        pace = self._pace.setdefault(key, _Pace())
        if timed:
            pace.commit = now - max(flight.loading_at, pace.last_end or flight.loading_at)
        pace.last_end = now

    def _run_group(self, group: list[_Member], loading: Callable[[], None]) -> None:
        if len(group) == 1:
            self._alone(group[0], loading)
            return
        first = group[0].request
        shared = RunRequest(
            pipeline=first.pipeline,
            objects=tuple(
                ObjectRef(m.request.source_uri or "", m.request.generation) for m in group
            ),
            trigger=first.trigger,
        )
        log.info(
            "group commit: %s objects of %s in run %s", len(group), first.pipeline, shared.run_id
        )
        try:
            report = self._execute(shared, [m.request for m in group], loading)
        except BaseException as raw:
            error = classify(raw, pipeline=first.pipeline)
            if error.retriable or isinstance(error, ModelFailedError | ModelUnavailableError):
                # the destination's failure (every member's), or a model after the shared
                # load committed: each member answers it
                for member in group:
                    member.error = _own_error(error, member.request)
                return
            log.warning(
                "group of %s failed (%s): running its objects one by one", len(group), error
            )
            for member in group:
                self._alone(member, loading)
            return
        for member in group:
            member.report = own_report(report, member.request)

    def _alone(self, member: _Member, loading: Callable[[], None]) -> None:
        try:
            member.report = self._execute(member.request, [member.request], loading)
        except BaseException as raw:
            member.error = raw


def own_report(shared: RunReport, request: RunRequest) -> RunReport:
    """A member's part of the group's report: its own object's file entries and rows; the run
    id, load ids, load jobs and timings stay the shared run's."""
    own = copy.copy(shared)
    own.files = [f for f in shared.files if f.uri == request.source_uri]
    if not own.files:  # named in another form (a narrowed URI): the whole report is its answer
        return shared
    own.rows_read = sum(f.rows_read for f in own.files)
    own.rows_loaded = sum(f.rows_loaded for f in own.files)
    own.rows_rejected = sum(f.rows_rejected for f in own.files)
    own.bytes_read = sum(f.bytes for f in own.files if f.status == "loaded")
    if shared.status == "succeeded" and not any(f.status == "loaded" for f in own.files):
        own.status = "skipped"
    return own


def _own_error(error: FerryError, request: RunRequest) -> FerryError:
    """The shared error, with the member's part of the shared report."""
    if not isinstance(error.report, RunReport):
        return error
    try:
        mine = copy.copy(error)
    except Exception:  # an error class that cannot be copied: the shared one, whole report
        return error
    mine.report = own_report(error.report, request)  # the shared one stays on `error`
    return mine
