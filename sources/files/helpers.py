"""Pure functions of the files source: URI and glob parsing, format detection, sharding."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol, TypeVar

from core.errors import ConfigError
from core.spec import FileFormat

from .settings import GLOB_CHARS

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


def is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def split_gs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b.csv` -> (`bucket`, `a/b.csv`); the name is kept byte for byte."""
    if not is_gcs(uri):
        raise ConfigError(f"'{uri}' is not a gs:// URI")
    bucket, _, name = uri[5:].partition("/")
    if not bucket:
        raise ConfigError(f"'{uri}' names no bucket")
    return bucket, name


def has_glob(pattern: str) -> bool:
    return any(char in GLOB_CHARS for char in pattern)


def literal_prefix(pattern: str) -> str:
    """The part before the first glob character: the listing prefix sent to GCS."""
    for index, char in enumerate(pattern):
        if char in GLOB_CHARS:
            return pattern[:index]
    return pattern


def split_glob(pattern: str) -> tuple[str, str]:
    """Split at the first path segment holding a glob: (`data/in`, `**/*.csv`)."""
    segments = pattern.split("/")
    for index, segment in enumerate(segments):
        if has_glob(segment):
            return "/".join(segments[:index]), "/".join(segments[index:])
    return pattern, ""


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob where `*` and `?` stay within one segment and `**` crosses segments."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out), re.DOTALL)


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
