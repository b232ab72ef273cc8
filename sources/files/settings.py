"""Constants of the files source."""

from __future__ import annotations

DEFAULT_BATCH_BYTES = 8 << 20
"""Bytes of (decompressed) input per Arrow record batch: bounds memory per file."""

READ_BLOCKS_PER_BATCH = 8
"""Arrow's CSV/JSON readers queue up to ~40 blocks ahead of the consumer, so they read
blocks of batch_bytes / 8 (~5 batches queued at most) and the blocks are joined into batches."""

MIN_READ_BLOCK_BYTES = 1 << 20
"""Floor of that block size; it is also the longest row (CSV) or line (JSON) accepted."""

MIN_GCS_CHUNK_BYTES = 1 << 20
"""Smallest ranged GET issued to Cloud Storage; smaller requests are latency-bound."""

GZIP_MAGIC = b"\x1f\x8b"

MAX_COLUMNS = 10_000
"""Widest file read by default: BigQuery's limit of columns per table."""
