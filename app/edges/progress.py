"""A one-line live progress display for long runs on a terminal (silent elsewhere)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from app.ops.service import RunReport


class TerminalProgress:
    """Callable given to the runner; redraws at most a few times a second."""

    def __init__(self, stream: TextIO, enabled: bool, interval: float = 0.2) -> None:
        self.stream = stream
        self.enabled = enabled
        self.interval = interval
        self.started = time.perf_counter()
        self.last_drawn = 0.0
        self.drawn = False

    @classmethod
    def for_stderr(cls) -> TerminalProgress:
        return cls(sys.stderr, enabled=sys.stderr.isatty())

    def __call__(self, report: RunReport) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last_drawn < self.interval:
            return
        self.last_drawn = now
        elapsed = max(now - self.started, 1e-6)
        done = sum(1 for f in report.files if f.rows_read)
        line = (
            f"\r{report.pipeline}: file {done}/{len(report.files)}  "
            f"{report.rows_read:,} rows  {report.rows_read / elapsed:,.0f} rows/s  "
            f"{report.bytes_read / 1e6:,.1f} MB  {elapsed:,.1f}s"
        )
        self.stream.write(line.ljust(90))
        self.stream.flush()
        self.drawn = True

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
