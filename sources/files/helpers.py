"""Pure functions of the files source: format detection and sharding (globs: core/globs.py)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol, TypeVar

from core.errors import ConfigError
from core.spec import FileFormat

_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class FileKind(NamedTuple):
    format: FileFormat
    gzip_extension: bool
    """The name ends in `.gz`."""
    tab_separated: bool
    """`.tsv`/`.tab`: the default delimiter becomes a tab."""


class HasUri(Protocol):
    @property
    def uri(self) -> str: ...


T = TypeVar("T", bound=HasUri)


def detect_kind(name: str, declared: FileFormat | None) -> FileKind:
    """Format from the declaration, else from the extension (with an optional `.gz`)."""
    lower = name.lower()
    gzip_extension = lower.endswith(".gz")
    stem = lower[:-3] if gzip_extension else lower
    extension = stem[stem.rfind(".") :] if "." in stem.rsplit("/", 1)[-1] else ""
    tab_separated = extension in (".tsv", ".tab")
    if declared is not None:
        return FileKind(declared, gzip_extension, tab_separated)
    found = _EXTENSIONS.get(extension)
    if found is None:
        raise ConfigError(
            f"cannot tell the format of '{name}' from its extension; "
            "set source.format to csv, jsonl or parquet"
        )
    return FileKind(found, gzip_extension, tab_separated)


def shard(objects: Sequence[T], index: int, count: int) -> list[T]:
    """This task's share of `objects` (Cloud Run Jobs): stable across runs and machines."""
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"task index {index} is outside the task count {count}")
    return [obj for obj in objects if zlib.crc32(obj.uri.encode("utf-8")) % count == index]
