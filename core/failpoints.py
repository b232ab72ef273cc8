"""Named points where the fault suite kills the process, to prove crashes lose nothing.

`FERRY_FAILPOINTS=after_first_batch,before_response` SIGKILLs the process when a run reaches
those points; `during_load:0.3` kills it 0.3 s into the load step; `model_build:raise` raises
a connection error there instead (a retriable failure, the process lives on), and
`model_build:hang` stalls there for a minute (a long model build). Unset in
production: each point then costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
import threading
import time

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


def hit(name: str) -> None:
    """Kill the process now (or after the point's delay, from a timer) if `name` is armed;
    raise a connection error if it is armed with `raise`."""
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
