"""Finding source objects (GCS or local) and opening them as byte streams."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from core.errors import (
    FerryError,
    Party,
    SourceAccessDeniedError,
    SourceNotFoundError,
    SourceUnavailableError,
    recognise,
)
from core.globs import glob_regex, has_glob, literal_prefix, matches, split_glob, within
from core.uris import gs_uri, is_gcs, split_gs_uri

from .settings import MIN_GCS_CHUNK_BYTES

if TYPE_CHECKING:
    from google.cloud import storage

StorageClientFactory = Callable[[], "storage.Client"]
"""Builds (or returns a cached) GCS client; only called when a gs:// URI is touched."""

_LIST_FIELDS = "items(name,generation,size),nextPageToken"

log = logging.getLogger("ferry.files")


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

    The glob rule is core/globs.py's: `*` and `?` within one segment, `**` across, and a
    pattern without a glob is that object or that folder. A local file whose real path leaves
    the pattern's folder (a symlink pointing out) is never listed.
    """
    if is_gcs(pattern):
        found = _list_gcs(pattern, storage_client)
    else:
        found = _list_local(resolve_pattern(pattern, base_dir))
    if not found:
        raise SourceNotFoundError(f"no file matches '{pattern}'")
    return sorted(found, key=lambda obj: obj.uri)


def resolve_pattern(pattern: str, base_dir: Path) -> str:
    """A local pattern as an absolute path whose fixed folders are real (symlinks and `..`
    resolved), so the objects listed under it compare with it as plain strings. A gs://
    pattern is returned as it is."""
    if is_gcs(pattern):
        return pattern
    static, rest = split_glob(pattern)
    if pattern.startswith("/") and not static:
        static = "/"
    root = str((base_dir / static).resolve()).rstrip("/")  # an absolute static replaces base_dir
    if rest:
        return f"{root}/{rest}"
    return root + "/" if pattern.endswith("/") else root or "/"


def inside(pattern: str, uri: str) -> bool:
    """The object `uri` is one `pattern` covers; a local file also must not resolve (through
    a symlink) outside the pattern's folder. `pattern` is resolved (resolve_pattern)."""
    if not matches(pattern, uri):
        return False
    if is_gcs(uri):
        return True
    return within(split_glob(pattern)[0] or "/", str(Path(uri).resolve()))


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
    """Turn google-cloud-storage failures into ferry errors that say whether to retry
    (core.errors' one status/reason table, as for the API source and the destination)."""
    try:
        yield
    except FerryError:
        raise
    except Exception as error:
        failure = recognise(error, party=Party.SOURCE)
        if failure is None:
            raise
        raise type(failure)(f"Cloud Storage, '{what}': {failure.message}") from error


def _client(factory: StorageClientFactory) -> Any:
    with gcs_errors("Cloud Storage client"):
        return factory()


def _blob_reader(obj: SourceObject, factory: StorageClientFactory, chunk_bytes: int) -> Any:
    bucket_name, name = split_gs_uri(obj.uri)
    blob = _client(factory).bucket(bucket_name).blob(name, generation=obj.generation or None)
    # raw_download: the stored bytes even for `Content-Encoding: gzip` objects; gzip is
    # then detected by its magic bytes and decompressed here, under the size cap.
    # imported here: google-cloud-storage costs ~0.35 s to import, and local runs never use it
    from google.cloud.storage.fileio import BlobReader

    return BlobReader(blob, chunk_size=max(chunk_bytes, MIN_GCS_CHUNK_BYTES), raw_download=True)


def _list_gcs(pattern: str, factory: StorageClientFactory) -> list[SourceObject]:
    bucket_name, name_pattern = split_gs_uri(pattern)
    if name_pattern == "" or name_pattern.endswith("/"):
        name_pattern += "**"
    client = _client(factory)
    with gcs_errors(pattern):
        blobs = []
        if not has_glob(name_pattern):
            blob = client.bucket(bucket_name).get_blob(name_pattern)
            if blob is not None:
                blobs = [blob]
            else:  # no such object: the folder of that name, as for local paths
                name_pattern += "/**"
        if has_glob(name_pattern):
            matcher = glob_regex(name_pattern)
            listed = client.list_blobs(
                bucket_name, prefix=literal_prefix(name_pattern) or None, fields=_LIST_FIELDS
            )
            blobs = [blob for blob in listed if matcher.fullmatch(blob.name)]
    return [
        SourceObject(gs_uri(bucket_name, blob.name), int(blob.generation), int(blob.size))
        for blob in blobs
        if not blob.name.endswith("/")  # "folder" placeholder objects
    ]


def _list_local(pattern: str) -> list[SourceObject]:
    """`pattern` is absolute with real fixed folders (resolve_pattern)."""
    if pattern.endswith("/"):
        pattern += "**"
    static, rest = split_glob(pattern)
    root = Path(static or "/")
    if not rest:
        if root.is_file():
            return [_local_object(root)]
        if not root.is_dir():
            return []
        rest = "**"
        pattern = f"{str(root).rstrip('/')}/**"
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
        for file in files:
            if not matcher.fullmatch(prefix + file):
                continue
            path = Path(directory) / file
            if not inside(pattern, str(path)):
                log.warning("skip %s: it resolves outside %s", path, root)
                continue
            found.append(_local_object(path))
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
