"""Which objects a file run may read: the configured pattern, narrowed by a request, and every
object re-checked against the configured pattern before it is read (core/globs.py's rule)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from app.run.report import FileReport, RunReport
from core.errors import RequestError, SourceUnavailableError
from core.globs import is_plain, narrows
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
    raise SourceUnavailableError(
        f"object '{live.uri}' generation {generation} is not visible yet "
        f"(live generation {live.generation})"
    )
