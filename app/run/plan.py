"""The plan of a file run: which objects to read, which the ledger says are loaded, and how
the load must commit (append under a guard, or merge by object). No object is read here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.destinations.ledger import DELETED, EMPTIED, Ledger, read_ledger, read_lineage, retire
from app.destinations.ordering import OrderedMerge, merge_order, tombstones_exist
from app.destinations.pipeline import destination_lock, destination_writer
from app.destinations.registry import engine_for
from app.run.raw_zone import days, origin_of, partition
from app.run.report import FileReport
from app.run.request import CommitGuard, RunContext
from app.run.selection import admitted, check_generation, narrowed_uri, requested_generation
from core.errors import DestinationUnavailableError, RequestError, SourceNotFoundError
from core.globs import has_glob
from core.lineage import REJECTS_SUFFIX
from core.spec import FilesSource
from sources.files import (
    SourceObject,
    get_object,
    list_objects,
    resolve_pattern,
    shard,
)

log = logging.getLogger("ferry.files")


@dataclass(frozen=True)
class Planned:
    """An object to read, and the object its rows are lineage of (differs when replaying)."""

    obj: SourceObject | None
    """None for a deleted object (nothing to read)."""
    uri: str
    generation: int
    lineage: bool = True
    """False for archived API pages: API rows carry no object lineage (keyed by primary key)."""
    deleted: bool = False
    """The object generation was deleted (OBJECT_DELETE): nothing to read, its rows go."""
    missing: SourceNotFoundError | None = None
    """The object named is gone: nothing to read. A no-op when the ledger already holds that
    generation (a late duplicate after a delete); otherwise not found."""

    @property
    def size(self) -> int:
        return int(getattr(self.obj, "size", 0) or 0)


@dataclass
class FilePlan:
    """What the extractor reads and how the load commits."""

    pending: list[tuple[Planned, FileReport]]
    guard: CommitGuard | None
    """Set on the DuckDB append fast path: re-checks the ledger right before the commit."""
    keyed_by_object: bool
    """Rows merge on their source object, so a reload replaces that object's rows."""
    replaying: bool
    order: OrderedMerge | None = None
    """Merge pipelines: the conditions that keep the latest change per key (ordering.py)."""
    tombstones: OrderedMerge | None = None
    """Hard-deleting CDC pipelines: how `<table>__tombstones` keeps the latest delete per key."""
    record_every_object: bool = False
    """`_ferry_objects` does not exist yet: write a ledger row for every object this time."""
    tombstones_guard: CommitGuard | None = None
    """Set when `order` could not consult `<table>__tombstones` (none yet): re-checked under
    the table's writer right before the commit."""

    @property
    def commit_guard(self) -> CommitGuard | None:
        """What the runner calls under the table's writer right before the load commits."""
        guards = [guard for guard in (self.guard, self.tombstones_guard) if guard is not None]
        if len(guards) < 2:
            return guards[0] if guards else None

        def both() -> None:
            for guard in guards:
                guard()

        return both


def plan_files(run: RunContext, source: FilesSource, storage_client: Any) -> FilePlan:
    replaying = run.request.replay is not None
    destination = run.spec.destination
    order = tombstones = None
    with run.report.timed("list"):
        if replaying:
            planned = _replayed_objects(run, storage_client)
        elif run.request.object_deleted:
            planned = _deleted_object(run, source, storage_client)
        else:
            planned = _select_objects(run, source, storage_client)
        ledger = Ledger({}, frozenset())
        if run.spec.destination.write_disposition != "replace" and not replaying:
            with destination_lock(run.settings):
                ledger = read_ledger(
                    run.pipeline, run.spec.name, destination.table, (p.uri for p in planned)
                )
        pending = _not_yet_loaded(run, planned, ledger)
        by_object = all(plan.lineage for plan, _ in pending)
        tombstones_guard = None
        if pending and by_object and destination.ordered:
            with destination_lock(run.settings):
                order, tombstones, consulted = merge_order(run.pipeline, destination, run.settings)
            if tombstones is not None and not consulted:
                tombstones_guard = _no_tombstones_yet(run)
    # a replay replaces each object's rows, so it always merges by object
    guard = None
    if pending and not replaying:
        guard = _append_guard(run, [p.uri for p, _ in pending], ledger)
    plan = FilePlan(
        pending,
        guard,
        guard is None and by_object,
        replaying,
        order,
        tombstones,
        tombstones_guard=tombstones_guard,
    )
    plan.record_every_object = not ledger.recorded_table
    return plan


def _no_tombstones_yet(run: RunContext) -> CommitGuard:
    """The merge was planned without the tombstone check (no `<table>__tombstones` yet). If
    another run created it since (its first delete), this run's older upserts could bring a
    deleted key back: abort (retriable), and the retry plans with the check. One query, and
    only until a table's first delete ever."""

    def check() -> None:
        if tombstones_exist(run.pipeline, run.spec.destination.table, run.settings):
            raise DestinationUnavailableError(
                "another run recorded this table's first deletes while this one was "
                "extracting; retry to check them",
                pipeline=run.spec.name,
            )

    return check


def _deleted_object(run: RunContext, source: FilesSource, storage_client: Any) -> list[Planned]:
    """An OBJECT_DELETE notification: the object is gone, so there is nothing to read.

    The event is checked against the object itself before any row goes: an object that still
    exists at the generation named (or a newer one) keeps its rows, and a delete naming a
    generation above the live one cannot be true (generations only grow)."""
    request, name = run.request, run.spec.name
    if request.source_uri is None or request.generation is None:
        raise RequestError("a deleted object needs its uri and generation", pipeline=name)
    pattern = resolve_pattern(source.uri, run.catalog.base_dir)
    uri = narrowed_uri(name, pattern, request.source_uri, run.catalog.base_dir)
    generation = request.generation
    check_generation(name, uri, generation, emulated_gcs=_emulated(run))
    try:
        live = get_object(uri, None, storage_client=storage_client)
    except SourceNotFoundError:
        return [Planned(None, uri, generation, deleted=True)]
    if live.generation < generation:
        raise RequestError(
            f"the delete of '{uri}' names generation {generation}, above the object's live "
            f"generation {live.generation}: no such generation was deleted",
            pipeline=name,
        )
    entry = FileReport(uri=uri, generation=generation, bytes=0)
    entry.status = "superseded" if live.generation > generation else "not_deleted"
    entry.reason = f"the object still exists at generation {live.generation}"
    log.warning("skip the delete of %s (generation %s): %s", uri, generation, entry.reason)
    run.report.files.append(entry)
    return []


def _emulated(run: RunContext) -> bool:
    return bool(run.settings.storage_emulator_host)


def _select_objects(run: RunContext, source: FilesSource, storage_client: Any) -> list[Planned]:
    request, base_dir, name = run.request, run.catalog.base_dir, run.spec.name
    pattern = resolve_pattern(source.uri, base_dir)
    named = True
    objects: list[SourceObject | None]
    gone: list[Planned] = []
    if request.objects:
        objects = []
        for ref in request.objects:
            uri = narrowed_uri(name, pattern, ref.uri, base_dir)
            found = _named_object(run, uri, ref.generation, storage_client)
            if isinstance(found, Planned):
                gone.append(found)
            else:
                objects.append(found)
    elif request.source_uri is None:
        named = False
        objects = list(list_objects(pattern, base_dir=base_dir, storage_client=storage_client))
    else:
        target = narrowed_uri(name, pattern, request.source_uri, base_dir)
        if request.generation is None and has_glob(target):
            named = False
            objects = list(list_objects(target, base_dir=base_dir, storage_client=storage_client))
        elif request.generation is not None:
            found = _named_object(run, target, request.generation, storage_client)
            if isinstance(found, Planned):
                gone.append(found)
                objects = []
            else:
                objects = [found]
        else:
            try:
                live = get_object(target, None, storage_client=storage_client)
            except SourceNotFoundError as missing:
                # no such object: that folder, as the glob rule reads a name without a glob
                named = False
                objects = list(_folder(target, base_dir, storage_client, missing))
            else:
                objects = [live]
    present = [obj for obj in objects if obj is not None]
    kept = admitted(name, pattern, present, named=named)
    if present and not kept:
        raise SourceNotFoundError(
            f"no object it matched lies within the configured source '{pattern}'", pipeline=name
        )
    selected = shard(kept, request.shard_index, request.shard_count)
    return [*gone, *(Planned(obj, obj.uri, obj.generation) for obj in selected)]


def _named_object(
    run: RunContext, uri: str, generation: int | None, storage_client: Any
) -> SourceObject | Planned | None:
    """The live object a request (or a notification) names at `generation`: the object, None
    when a newer generation superseded it, or a Planned `missing` entry when it is gone (the
    ledger decides whether that is a late duplicate or not found)."""
    check_generation(run.spec.name, uri, generation, emulated_gcs=_emulated(run))
    try:
        live = get_object(uri, None, storage_client=storage_client)
    except SourceNotFoundError as missing:
        if generation is None:
            raise
        missing.pipeline = missing.pipeline or run.spec.name
        return Planned(None, uri, generation, missing=missing)
    return requested_generation(live, generation, run.report)


def _folder(
    target: str, base_dir: Path, storage_client: Any, missing: SourceNotFoundError
) -> list[SourceObject]:
    try:
        return list_objects(target + "/", base_dir=base_dir, storage_client=storage_client)
    except SourceNotFoundError:
        raise missing from None


def _replayed_objects(run: RunContext, storage_client: Any) -> list[Planned]:
    request, spec = run.request, run.spec
    if spec.raw is None or request.replay is None:
        raise RequestError(
            f"pipeline '{spec.name}' keeps no raw zone to replay", pipeline=spec.name
        )
    prefix = resolve_pattern(spec.raw.prefix, run.catalog.base_dir)
    planned = []
    for day in days(*request.replay):
        folder = partition(prefix, spec.name, day)
        try:
            found = list_objects(
                folder + "/", base_dir=run.catalog.base_dir, storage_client=storage_client
            )
        except SourceNotFoundError:
            continue
        for obj in admitted(spec.name, folder, found, named=False):
            origin = origin_of(obj.uri, folder)
            from_api = origin.origin_uri == obj.uri
            planned.append(Planned(obj, origin.origin_uri, origin.generation, not from_api))
    if not planned:
        first, last = request.replay
        raise SourceNotFoundError(
            f"the raw zone holds nothing for '{spec.name}' from {first} to {last}",
            pipeline=spec.name,
        )
    return planned


def _not_yet_loaded(
    run: RunContext, planned: list[Planned], ledger: Ledger
) -> list[tuple[Planned, FileReport]]:
    pending = []
    seen: set[tuple[str, int, bool]] = set()
    for plan in planned:
        entry = FileReport(uri=plan.uri, generation=plan.generation, bytes=plan.size)
        run.report.files.append(entry)
        if plan.obj is not None and plan.obj.uri != plan.uri:
            entry.reason = f"replayed from {plan.obj.uri}"
        if (plan.uri, plan.generation, plan.deleted) in seen:
            # named twice in one request (a drain batch with duplicate notifications)
            entry.status, entry.reason = "already_loaded", "named twice in this run"
            continue
        seen.add((plan.uri, plan.generation, plan.deleted))
        loaded = ledger.committed.get(plan.uri)
        status = ledger.status.get(plan.uri)
        done = loaded is not None and (
            loaded > plan.generation
            or (loaded == plan.generation and (not plan.deleted or status == DELETED))
        )
        if done:
            assert loaded is not None
            entry.status = (
                "already_deleted"
                if status == DELETED and loaded == plan.generation
                else "already_loaded"
                if loaded == plan.generation
                else "stale_generation"
            )
            entry.reason = f"destination holds generation {loaded} ({status})"
            log.info("skip %s (generation %s): %s", plan.uri, plan.generation, entry.reason)
            if status in (EMPTIED, DELETED):
                # the load that recorded it may have died before removing the older rows
                writer = destination_writer(run.settings, run.spec.destination.table)
                with destination_lock(run.settings), writer:
                    retire(
                        run.pipeline,
                        run.spec.destination.table,
                        plan.uri,
                        loaded,
                        inclusive=status == DELETED,
                    )
            continue
        if plan.missing is not None:
            if not run.request.objects:
                raise plan.missing
            # one object of a batch (drain) is gone: the others still load, and the drain
            # dead-letters this one's notification on its own
            entry.status, entry.reason = "not_found", plan.missing.message
            log.warning("skip %s (generation %s): %s", plan.uri, plan.generation, entry.reason)
            continue
        pending.append((plan, entry))
    return pending


def _append_guard(run: RunContext, uris: list[str], ledger: Ledger) -> CommitGuard | None:
    """The DuckDB fast path: objects never loaded are appended instead of merged.

    A merge copies every row twice (staging, then the table). On DuckDB all writers queue on
    one lock, so re-reading the ledger under that lock right before the commit makes a plain
    append exactly as safe: if another run loaded one of these objects meanwhile, this run
    aborts (retriable) and its retry skips them. Only objects with no rows at all (in the
    table or its rejects) qualify: rows left by a killed load must be merged over.

    BigQuery (APPENDS_NEW_OBJECTS) appends such objects too. One instance serialises the runs
    of an object (object locks, group commit), so there the second look is skipped (a query
    job per run). With the writer lease set, the table's writer spans instances and the
    second look runs under it (runner._load), so two instances given one new object at once
    (a redelivery past the ack deadline) cannot both append it.
    """
    destination = run.spec.destination
    engine = engine_for(run.settings).destination
    if not (
        (engine.APPEND_UNDER_LOCK or engine.APPENDS_NEW_OBJECTS)
        and destination.write_disposition == "append"
        and not destination.merge_key
    ):
        return None
    with destination_lock(run.settings):
        if _any_rows(run, uris, ledger):
            return None
    if not engine.APPEND_UNDER_LOCK and not run.settings.writer_lease_prefix:
        # one instance: its runs of an object are serialised (object locks, group commit)
        return _appends

    def check() -> None:
        if _any_rows(run, uris, None):
            raise DestinationUnavailableError(
                "another run loaded some of these objects while this one was extracting; "
                "retry to skip them",
                pipeline=run.spec.name,
            )

    return check


def _appends() -> None:
    """The guard of an append with nothing to look at again."""


def _any_rows(run: RunContext, uris: list[str], ledger: Ledger | None) -> bool:
    table = run.spec.destination.table
    data = ledger or read_lineage(run.pipeline, table, uris)
    if any(uri in data.present for uri in uris):
        return True
    pipeline = run.pipeline
    if (
        pipeline.default_schema_name
        and table + REJECTS_SUFFIX not in pipeline.default_schema.tables
    ):
        return False  # this pipeline never loaded a rejected row: no rejects table to read
    rejects = read_lineage(run.pipeline, table + REJECTS_SUFFIX, uris)
    return any(uri in rejects.present for uri in uris)
