"""Which objects a file run may read: the configured pattern, narrowed by a request, and every
object re-checked against the configured pattern before it is read (core/globs.py's rule)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from app.run.report import FileReport, RunReport
from core.errors import RequestError, SourceNotFoundError
from core.globs import is_plain, narrows
from core.uris import is_gcs
from sources.files import SourceObject, inside, resolve_pattern

log = logging.getLogger("ferry.files")


def narrowed_uri(pipeline: str, pattern: str, uri: str, base_dir: Path) -> str:
    """A request's `source` may only point inside the configured pattern (resolved): never
    another bucket, a look-alike prefix (`land-secrets` beside `land`) or a `..` escape."""
    candidate = resolve_pattern(uri, base_dir) if is_plain(uri) else uri
    if not narrows(pattern, candidate):
        raise RequestError(
            f"source '{uri}' is outside the pipeline's configured source '{pattern}'",
            pipeline=pipeline,
        )
    return candidate


def admitted(
    pipeline: str, pattern: str, objects: Iterable[SourceObject], *, named: bool
) -> list[SourceObject]:
    """The objects the configured pattern covers (a local one not resolving outside its
    folder). A narrowed glob may list more than the pattern allows (`raw/**` under
    `raw/*.csv`): those are left out; an object the request named itself is refused."""
    kept = []
    for obj in objects:
        if inside(pattern, obj.uri):
            kept.append(obj)
        elif named:
            raise RequestError(
                f"'{obj.uri}' is outside the pipeline's configured source '{pattern}'",
                pipeline=pipeline,
            )
        else:
            log.warning("skip %s: outside the configured source %s", obj.uri, pattern)
    return kept


def requested_generation(
    live: SourceObject, generation: int | None, report: RunReport
) -> SourceObject | None:
    """A notification names one generation; only the live one may load.

    An older generation that was overwritten is superseded: the newer generation's own
    notification loads it, so this one is acknowledged without loading anything.
    """
    if generation is None or live.generation == generation:
        return live
    if live.generation > generation:
        superseded = FileReport(uri=live.uri, generation=generation, bytes=0)
        superseded.status = "superseded"
        superseded.reason = f"object is now at generation {live.generation}"
        report.files.append(superseded)
        return None
    # generations only grow, and Cloud Storage answers reads after a write consistently: a
    # generation above the live one never existed (a forged or corrupt event), so waiting
    # for it would nack for ever
    raise SourceNotFoundError(
        f"object '{live.uri}' has no generation {generation}: its live generation is "
        f"{live.generation}, and generations only grow"
    )


FUTURE_MARGIN_SECONDS = 86_400
"""Clock skew allowed between the event's stamp and this instance (a day: generous)."""


def check_generation(
    pipeline: str, uri: str, generation: int | None, *, emulated_gcs: bool = False
) -> None:
    """Refuse a generation that cannot exist: Cloud Storage stamps a generation with the
    microsecond of its write (the local emulator and local files with the nanosecond), so
    one above the present is a bad event. Recorded in the ledger it would block the object
    for ever (every real generation would read stale), so it is terminal."""
    if generation is None:
        return
    nanoseconds = not is_gcs(uri) or emulated_gcs
    limit = (time.time() + FUTURE_MARGIN_SECONDS) * (1e9 if nanoseconds else 1e6)
    if generation < 0 or generation > limit:
        raise RequestError(
            f"generation {generation} of '{uri}' cannot exist: Cloud Storage generations are "
            "write times, and this one lies in the future",
            pipeline=pipeline,
        )
