"""`function:` steps: the user's callable, imported by its `module:attribute` reference.

Apart from transform.py so that checking a pipelines file at start (every function must
import) does not load pyarrow and the Arrow step compiler (~0.15 s of a cold start).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import ConfigError
from core.spec import FunctionStep, TransformStep


def import_function(pipeline: str, number: int, target: str) -> Callable[[Any], Any]:
    module_name, _, attribute = target.partition(":")
    try:
        function: Any = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(
            f"step {number} (function): cannot import '{target}': {error}", pipeline=pipeline
        ) from None
    if not callable(function):
        raise ConfigError(
            f"step {number} (function): '{target}' is not callable", pipeline=pipeline
        )
    return function  # type: ignore[no-any-return]


def check_functions(pipeline: str, steps: Sequence[TransformStep]) -> None:
    """Import every `function:` step now: a missing module fails the deploy, not a run."""
    for number, step in enumerate(steps, start=1):
        if isinstance(step, FunctionStep):
            import_function(pipeline, number, step.function)
