"""Named points where the fault suite kills the process, to prove crashes lose nothing.

`FERRY_FAILPOINTS=after_first_batch,before_response` SIGKILLs the process when a run reaches
those points; `during_load:0.3` kills it 0.3 s into the load step; `model_build:raise` raises
a connection error there instead (a retriable failure, the process lives on), and
`model_build:hang` stalls there for a minute (a long model build). Unset in
production: each point then costs one environment lookup. In-process tests can instead run
a function of their own at a point (`hooked`), to hold one run there while another goes on.

Points: after_first_batch, during_load, after_commit, before_ack, model_build, writer_waiting
(a load found its table's writer held by another run and is about to wait for it),
incremental_read (an incremental model read its mark, before reading rows),
incremental_record (its rows committed, its new mark not yet), before_load_marked
(BigQuery: every job of the load done, its `_dlt_loads` row not written) and
after_streamed_commit (DuckDB: a streamed append's rows committed, dlt's load not started).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ENV = "FERRY_FAILPOINTS"


RAISE = "raise"
HANG = "hang"
HANG_SECONDS = 60.0


def _armed() -> dict[str, str]:
    points: dict[str, str] = {}
    for item in os.environ.get(ENV, "").split(","):
        name, _, action = item.strip().partition(":")
        if name:
            points[name] = action or "0"
    return points


_hooks: dict[str, Callable[[], None]] = {}


@contextmanager
def hooked(name: str, action: Callable[[], None]) -> Iterator[None]:
    """Within the block, every run of this process that reaches `name` calls `action`."""
    _hooks[name] = action
    try:
        yield
    finally:
        _hooks.pop(name, None)


def hit(name: str) -> None:
    """Kill the process now (or after the point's delay, from a timer) if `name` is armed;
    raise a connection error if it is armed with `raise`. A hook of this process runs first."""
    hook = _hooks.get(name)
    if hook is not None:
        hook()
    points = _armed()
    if name not in points:
        return
    if points[name] == RAISE:
        raise ConnectionError(f"failpoint {name}: the connection was lost")
    if points[name] == HANG:
        time.sleep(HANG_SECONDS)
        return
    delay = float(points[name])
    if delay <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
    timer = threading.Timer(delay, os.kill, args=(os.getpid(), signal.SIGKILL))
    timer.daemon = True
    timer.start()
