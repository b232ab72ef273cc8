"""Custom transform functions for the example pipelines (the `function:` escape hatch)."""

import pandas as pd


def add_order_size(frame: pd.DataFrame) -> pd.DataFrame:
    """Bucket orders by amount: a step too specific for the declarative list."""
    sizes = pd.cut(
        frame["amount"].astype("float64"),
        bins=[0, 50, 250, float("inf")],
        labels=["small", "medium", "large"],
        right=False,
    )
    return frame.assign(order_size=sizes.astype("string[pyarrow]"))
