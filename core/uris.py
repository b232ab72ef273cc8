"""Object URIs: `gs://bucket/name` for Cloud Storage, anything else is a local path."""

from __future__ import annotations

from core.errors import ConfigError

GCS_SCHEME = "gs://"


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS_SCHEME)


def split_gs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b.csv` -> (`bucket`, `a/b.csv`); the name is kept byte for byte."""
    if not is_gcs(uri):
        raise ConfigError(f"'{uri}' is not a gs:// URI")
    bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
    if not bucket:
        raise ConfigError(f"'{uri}' names no bucket")
    return bucket, name


def gs_uri(bucket: str, name: str) -> str:
    return f"{GCS_SCHEME}{bucket}/{name}"
