"""Logging: JSON lines with `severity` for Cloud Logging, readable text on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from core import log_context

# Cloud Logging reads these keys from a JSON line; extras are kept as structured fields.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class CloudLoggingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        # the request's trace and the run's labels: Cloud Logging groups lines by them
        entry.update(log_context.current())
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(fmt: str = "auto", level: str = "INFO", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    if use_json:
        handler.setFormatter(CloudLoggingFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # library warnings (google-cloud-bigquery's "Storage client not installed") go through
    # this handler as WARNING lines, not as raw text on stderr
    logging.captureWarnings(True)
    # dlt and the Google clients are chatty at INFO; their warnings still show
    for noisy in ("dlt", "google", "urllib3", "gcsfs", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
