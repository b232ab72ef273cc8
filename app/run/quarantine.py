"""Copy a file that failed its checks (or could not be read) aside, with the reason."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from core.uris import gs_uri, is_gcs, split_gs_uri

log = logging.getLogger("ferry.quarantine")


def quarantine(
    uri: str,
    generation: int,
    prefix: str,
    *,
    pipeline: str,
    reason: str,
    storage_client: Any,
    base_dir: Path,
) -> str | None:
    """The quarantined copy's URI: `<prefix>/pipeline=<name>/<generation>/<object name>`."""
    try:
        if is_gcs(uri) and is_gcs(prefix):
            return _copy_gcs(uri, generation, prefix, pipeline, reason, storage_client())
        if not is_gcs(uri) and not is_gcs(prefix):
            return _copy_local(Path(uri), generation, base_dir / prefix, pipeline, reason)
        log.warning("not quarantined: %s and %s are not both GCS or both local", uri, prefix)
    except Exception as error:  # the failure itself is still reported; the copy is a courtesy
        log.warning("could not quarantine %s: %s", uri, error)
    return None


def _copy_gcs(
    uri: str, generation: int, prefix: str, pipeline: str, reason: str, client: Any
) -> str:
    source_bucket, name = split_gs_uri(uri)
    target_bucket, target_prefix = split_gs_uri(prefix)
    target_name = f"{target_prefix.rstrip('/')}/pipeline={pipeline}/{generation}/{name}".lstrip("/")
    source = client.bucket(source_bucket).blob(name, generation=generation)
    copied = client.bucket(source_bucket).copy_blob(
        source, client.bucket(target_bucket), target_name
    )
    copied.metadata = {"ferry_reason": reason[:1000], "ferry_source": uri}
    copied.patch()
    return gs_uri(target_bucket, target_name)


def _copy_local(path: Path, generation: int, folder: Path, pipeline: str, reason: str) -> str:
    target = folder / f"pipeline={pipeline}" / str(generation) / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    reason_file = target.with_name(target.name + ".reason.json")
    reason_file.write_text(json.dumps({"source": str(path), "reason": reason}), encoding="utf-8")
    return str(target)
