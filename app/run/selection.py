"""Which objects a file run may read: the configured pattern, narrowed by a request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.run.catalog import uri_matches
from app.run.report import FileReport, RunReport
from core.errors import RequestError, SourceUnavailableError


def resolve_pattern(uri: str, base_dir: Path) -> str:
    if uri.startswith("gs://"):
        return uri
    path = Path(uri)
    return str(path if path.is_absolute() else (base_dir / path))


def is_glob(uri: str) -> bool:
    return any(ch in uri for ch in "*?[")


def narrowed_uri(pipeline: str, pattern: str, uri: str, base_dir: Path) -> str:
    """An override may only point inside the configured pattern (never another bucket)."""
    candidate = uri if uri.startswith("gs://") else resolve_pattern(uri, base_dir)
    if not uri_matches(pattern, candidate) and not _is_sub_pattern(pattern, candidate):
        raise RequestError(
            f"source '{uri}' is outside the pipeline's configured source '{pattern}'",
            pipeline=pipeline,
        )
    return candidate


def _is_sub_pattern(pattern: str, candidate: str) -> bool:
    """A glob override like gs://b/raw/2024-*.csv is allowed when its fixed prefix is inside."""
    if not is_glob(candidate):
        return False
    prefix = candidate.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
    fixed = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
    return prefix.startswith(fixed) and ".." not in candidate.split("/")


def requested_generation(live: Any, generation: int | None, report: RunReport) -> Any:
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
