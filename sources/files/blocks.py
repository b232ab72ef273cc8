"""A byte stream cut into blocks that end at a line end, for parsers that take whole lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class LineTooLongError(Exception):
    """A line is longer than the caller accepts (its parser would have refused it too)."""


def line_blocks(stream: Any, block_bytes: int, max_line_bytes: int) -> Iterator[bytes]:
    """`stream` in blocks of about `block_bytes` that end at a line end (the last one may
    not); a line longer than `max_line_bytes` raises LineTooLongError without being held."""
    rest = b""
    while chunk := stream.read(block_bytes):
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) > max_line_bytes:
                raise LineTooLongError(f"a line is longer than {max_line_bytes} bytes")
            rest = data
            continue
        block, rest = data[:cut], data[cut:]
        if not _blank(block):
            yield block
    if not _blank(rest):
        yield rest


def _blank(block: bytes) -> bool:
    """Only whitespace (no record in it); a long block is taken to hold one."""
    return len(block) < 4096 and not block.strip()
