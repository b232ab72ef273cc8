"""Files source: list objects (GCS or local) and stream them as Arrow record batches."""

from __future__ import annotations

from .helpers import shard
from .objects import (
    SourceObject,
    StorageClientFactory,
    get_object,
    inside,
    list_objects,
    resolve_pattern,
)
from .readers import read_batches
from .rejects import RejectedRow, Rejects

__all__ = [
    "RejectedRow",
    "Rejects",
    "SourceObject",
    "StorageClientFactory",
    "get_object",
    "inside",
    "list_objects",
    "read_batches",
    "resolve_pattern",
    "shard",
]
