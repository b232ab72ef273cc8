"""The raw zone: untouched inputs archived per pipeline and day, and found again for replay.

Layout: `<prefix>/pipeline=<name>/dt=<YYYY-MM-DD>/<generation>/<origin>` where origin is
`<bucket>/<object>` for GCS objects, `local/<absolute path>` for local files and
`api/<run id>-<page>.jsonl` for API pages. The path alone says where a file came from, so a
replay can give its rows their original lineage (and replace, not duplicate, them).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from core.errors import ConfigError, SourceUnavailableError
from core.uris import GCS_SCHEME, is_gcs, split_gs_uri
from sources.files import resolve_pattern


@dataclass(frozen=True)
class RawFile:
    uri: str
    """Where the archived copy is (what a replay reads)."""
    origin_uri: str
    """The object it is a copy of (what its rows' lineage says)."""
    generation: int


def partition(prefix: str, pipeline: str, day: date) -> str:
    return f"{prefix.rstrip('/')}/pipeline={pipeline}/dt={day.isoformat()}"


def archive_object(
    uri: str, generation: int, prefix: str, pipeline: str, storage_client: Any, base_dir: Path
) -> str:
    """Copy one input into today's partition (server-side for GCS); same input, same name."""
    day = datetime.now(UTC).date()
    origin = "/".join(split_gs_uri(uri)) if is_gcs(uri) else "local/" + uri.lstrip("/")
    target = f"{partition(resolve_pattern(prefix, base_dir), pipeline, day)}/{generation}/{origin}"
    try:
        if is_gcs(uri) and is_gcs(target):
            source_bucket, name = split_gs_uri(uri)
            target_bucket, target_name = split_gs_uri(target)
            client = storage_client()
            client.bucket(source_bucket).copy_blob(
                client.bucket(source_bucket).blob(name, generation=generation),
                client.bucket(target_bucket),
                target_name,
            )
        elif not is_gcs(uri) and not is_gcs(target):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(uri, target)
        else:
            raise ConfigError(
                f"raw.prefix '{prefix}' and source '{uri}' must both be gs:// or local"
            )
    except (OSError, RuntimeError) as error:
        raise SourceUnavailableError(f"could not archive {uri} to the raw zone: {error}") from error
    return target


def archive_page(
    records: list[dict[str, Any]],
    prefix: str,
    pipeline: str,
    name: str,
    storage_client: Any,
    base_dir: Path,
) -> str:
    day = datetime.now(UTC).date()
    target = f"{partition(resolve_pattern(prefix, base_dir), pipeline, day)}/0/api/{name}.jsonl"
    body = "".join(json.dumps(record, default=str) + "\n" for record in records)
    try:
        if is_gcs(target):
            bucket, object_name = split_gs_uri(target)
            storage_client().bucket(bucket).blob(object_name).upload_from_string(body)
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text(body, encoding="utf-8")
    except (OSError, RuntimeError) as error:
        raise SourceUnavailableError(
            f"could not archive an API page to the raw zone: {error}"
        ) from error
    return target


def days(first: date, last: date) -> Iterable[date]:
    for offset in range((last - first).days + 1):
        yield first + timedelta(days=offset)


def origin_of(raw_uri: str, day_partition: str) -> RawFile:
    """Read the original object and generation back from an archived file's path."""
    rest = raw_uri[len(day_partition) :].lstrip("/")
    generation, _, origin = rest.partition("/")
    if origin.startswith("local/"):
        origin_uri = "/" + origin[len("local/") :]
    elif origin.startswith("api/"):
        origin_uri = raw_uri
    else:
        origin_uri = GCS_SCHEME + origin
    return RawFile(uri=raw_uri, origin_uri=origin_uri, generation=int(generation))
