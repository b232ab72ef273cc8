"""Custom transform functions for the example pipelines (the `function:` escape hatch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def add_order_size(frame: pd.DataFrame) -> pd.DataFrame:
    """Bucket orders by amount: a step too specific for the declarative list."""
    # imported on the first call, not when ferry checks the step at start: pandas costs
    # ~0.3 s of every cold start otherwise
    import pandas as pd

    sizes = pd.cut(
        frame["amount"].astype("float64"),
        bins=[0, 50, 250, float("inf")],
        labels=["small", "medium", "large"],
        right=False,
    )
    return frame.assign(order_size=sizes.astype("string[pyarrow]"))
