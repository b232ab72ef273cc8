"""Finding source objects (GCS or local) and opening them as byte streams."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import requests
from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors
from google.cloud.storage.fileio import BlobReader

from core.errors import (
    ConfigError,
    FerryError,
    QuotaExceededError,
    SourceAccessDeniedError,
    SourceNotFoundError,
    SourceUnavailableError,
)

from .helpers import glob_regex, has_glob, is_gcs, literal_prefix, split_glob, split_gs_uri
from .settings import MIN_GCS_CHUNK_BYTES

if TYPE_CHECKING:
    from google.cloud import storage

StorageClientFactory = Callable[[], "storage.Client"]
"""Builds (or returns a cached) GCS client; only called when a gs:// URI is touched."""

_LIST_FIELDS = "items(name,generation,size),nextPageToken"


@dataclass(frozen=True)
class SourceObject:
    """One file to load, pinned to the version that was listed."""

    uri: str
    """`gs://bucket/name`, or an absolute local path."""
    generation: int
    """GCS object generation; for local files `st_mtime_ns`."""
    size: int
    """Bytes as stored (compressed size)."""


def list_objects(
    pattern: str, *, base_dir: Path, storage_client: StorageClientFactory
) -> list[SourceObject]:
    """Every object matching `pattern`, sorted by URI; no match is an error.

    `*` and `?` match within one path segment, `**` across segments; a trailing `/`
    (or a local directory) means everything below it.
    """
    if is_gcs(pattern):
        found = _list_gcs(pattern, storage_client)
    else:
        found = _list_local(pattern, base_dir)
    if not found:
        raise SourceNotFoundError(f"no file matches '{pattern}'")
    return sorted(found, key=lambda obj: obj.uri)


def get_object(
    uri: str, generation: int | None, *, storage_client: StorageClientFactory
) -> SourceObject:
    """One object, e.g. named by a GCS notification; a generation that is gone is not found."""
    if not is_gcs(uri):
        return _local_object(Path(uri))
    bucket_name, name = split_gs_uri(uri)
    with gcs_errors(uri):
        blob = _client(storage_client).bucket(bucket_name).get_blob(name, generation=generation)
    if blob is None:
        raise SourceNotFoundError(f"object '{uri}' does not exist")
    # Without object versioning an overwritten generation is gone; never load the newer one
    # under the old notification (the newer one brings its own).
    if generation is not None and int(blob.generation) != generation:
        raise SourceNotFoundError(
            f"object '{uri}' generation {generation} was replaced by {blob.generation}"
        )
    return SourceObject(uri, int(blob.generation), int(blob.size))


def open_stream(
    obj: SourceObject, *, storage_client: StorageClientFactory, chunk_bytes: int
) -> tuple[pa.NativeFile, bytes]:
    """A forward-only stream of the stored bytes, and its first bytes (for format sniffing)."""
    if not is_gcs(obj.uri):
        file = open_seekable(obj, storage_client=storage_client, chunk_bytes=chunk_bytes)
        head = file.read(4)
        file.seek(0)
        return file, head
    # A BlobReader seek() costs a metadata request and drops its buffer: peek instead.
    buffered = io.BufferedReader(_blob_reader(obj, storage_client, chunk_bytes), 1 << 16)
    with gcs_errors(obj.uri):
        head = buffered.peek(4)[:4]
    return pa.PythonFile(buffered, mode="r"), head


def open_seekable(
    obj: SourceObject, *, storage_client: StorageClientFactory, chunk_bytes: int
) -> pa.NativeFile:
    """A random-access file (Parquet reads its footer first)."""
    if is_gcs(obj.uri):
        return pa.PythonFile(_blob_reader(obj, storage_client, chunk_bytes), mode="r")
    try:
        return pa.OSFile(obj.uri, mode="r")
    except FileNotFoundError as error:
        raise SourceNotFoundError(f"file '{obj.uri}' no longer exists") from error
    except PermissionError as error:
        raise SourceAccessDeniedError(f"cannot read '{obj.uri}': permission denied") from error


@contextmanager
def gcs_errors(what: str) -> Iterator[None]:
    """Turn google-cloud-storage failures into ferry errors that say whether to retry."""
    try:
        yield
    except FerryError:
        raise
    except google_errors.NotFound as error:
        raise SourceNotFoundError(f"'{what}' does not exist: {error.message}") from error
    except (
        google_errors.Forbidden,
        google_errors.Unauthorized,
        google_errors.PermissionDenied,
        auth_errors.DefaultCredentialsError,
        auth_errors.RefreshError,
    ) as error:
        raise SourceAccessDeniedError(f"access to '{what}' was denied: {error}") from error
    except google_errors.TooManyRequests as error:
        raise QuotaExceededError(f"Cloud Storage rate-limited '{what}': {error}") from error
    except (
        google_errors.ServerError,
        google_errors.RetryError,
        requests.exceptions.RequestException,
        auth_errors.TransportError,
        ConnectionError,
        TimeoutError,
    ) as error:
        raise SourceUnavailableError(f"Cloud Storage failed on '{what}': {error}") from error
    except google_errors.GoogleAPICallError as error:
        raise ConfigError(f"Cloud Storage rejected the request for '{what}': {error}") from error


def _client(factory: StorageClientFactory) -> Any:
    with gcs_errors("Cloud Storage client"):
        return factory()


def _blob_reader(obj: SourceObject, factory: StorageClientFactory, chunk_bytes: int) -> Any:
    bucket_name, name = split_gs_uri(obj.uri)
    blob = _client(factory).bucket(bucket_name).blob(name, generation=obj.generation or None)
    # raw_download: the stored bytes even for `Content-Encoding: gzip` objects; gzip is
    # then detected by its magic bytes and decompressed here, under the size cap.
    return BlobReader(blob, chunk_size=max(chunk_bytes, MIN_GCS_CHUNK_BYTES), raw_download=True)


def _list_gcs(pattern: str, factory: StorageClientFactory) -> list[SourceObject]:
    bucket_name, name_pattern = split_gs_uri(pattern)
    if name_pattern == "" or name_pattern.endswith("/"):
        name_pattern += "**"
    client = _client(factory)
    with gcs_errors(pattern):
        if not has_glob(name_pattern):
            blob = client.bucket(bucket_name).get_blob(name_pattern)
            blobs = [] if blob is None else [blob]
        else:
            matcher = glob_regex(name_pattern)
            listed = client.list_blobs(
                bucket_name, prefix=literal_prefix(name_pattern) or None, fields=_LIST_FIELDS
            )
            blobs = [blob for blob in listed if matcher.fullmatch(blob.name)]
    return [
        SourceObject(f"gs://{bucket_name}/{blob.name}", int(blob.generation), int(blob.size))
        for blob in blobs
        if not blob.name.endswith("/")  # "folder" placeholder objects
    ]


def _list_local(pattern: str, base_dir: Path) -> list[SourceObject]:
    if pattern.endswith("/"):
        pattern += "**"
    static, rest = split_glob(pattern)
    if pattern.startswith("/") and not static:
        static = "/"
    root = (base_dir / static).resolve()  # an absolute `static` replaces base_dir
    if not rest:
        if root.is_file():
            return [_local_object(root)]
        if not root.is_dir():
            return []
        rest = "**"
    matcher = glob_regex(rest)
    # Without `**` a match is at most this many directories deep: prune the walk there.
    max_depth = None if "**" in rest else rest.count("/")
    found: list[SourceObject] = []
    for directory, subdirs, files in os.walk(root, onerror=_raise_walk_error):
        relative = Path(directory).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        if max_depth is not None and prefix.count("/") >= max_depth:
            subdirs.clear()
        subdirs.sort()
        found.extend(
            _local_object(Path(directory) / file)
            for file in files
            if matcher.fullmatch(prefix + file)
        )
    return found


def _raise_walk_error(error: OSError) -> None:
    if isinstance(error, PermissionError):
        raise SourceAccessDeniedError(f"cannot list '{error.filename}': permission denied")
    if not isinstance(error, FileNotFoundError):  # a root that is missing is simply no match
        raise SourceUnavailableError(f"cannot list '{error.filename}': {error}")


def _local_object(path: Path) -> SourceObject:
    try:
        stat = path.stat()
    except FileNotFoundError as error:
        raise SourceNotFoundError(f"file '{path}' does not exist") from error
    except PermissionError as error:
        raise SourceAccessDeniedError(f"cannot read '{path}': permission denied") from error
    if not path.is_file():
        raise SourceNotFoundError(f"'{path}' is not a file")
    return SourceObject(str(path), stat.st_mtime_ns, stat.st_size)
