"""Declarative pandas steps: each does what its name says, and a failure names step and column."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from app.run.transform import compile_transform
from core.errors import ConfigError, TransformError
from core.spec import PipelineSpec


def frame(**columns: list[object]) -> pd.DataFrame:
    return pa.table(columns).to_pandas(types_mapper=pd.ArrowDtype)


def steps(*declared: dict[str, object]) -> list:  # type: ignore[type-arg]
    spec = PipelineSpec.model_validate(
        {
            "name": "p",
            "source": {"kind": "files", "uri": "x/*.csv"},
            "transform": list(declared),
            "destination": {"table": "t"},
        }
    )
    return list(spec.transform)


def test_steps_apply_in_order() -> None:
    transform = compile_transform(
        "orders",
        steps(
            {"rename": {"Qty": "quantity", "Price": "price"}},
            {"cast": {"quantity": "int64", "price": "float64"}},
            {"filter": "quantity > 1"},
            {"derive": {"amount": "quantity * price"}},
            {"fill_nulls": {"note": "none"}},
            {"drop": ["price"]},
        ),
    )
    out = transform(frame(Qty=["1", "2", "3"], Price=["2.5", "1.5", None], note=["a", None, "c"]))
    assert list(out.columns) == ["quantity", "note", "amount"]
    assert out["quantity"].tolist() == [2, 3]
    assert out["amount"].tolist()[0] == pytest.approx(3.0)
    assert pd.isna(out["amount"].tolist()[1])
    assert out["note"].tolist() == ["none", "c"]


def test_select_and_dedupe_keep_last() -> None:
    transform = compile_transform(
        "p", steps({"dedupe": ["id"], "keep": "last"}, {"select": ["id", "v"]})
    )
    out = transform(frame(id=[1, 1, 2], v=["old", "new", "x"], extra=[0, 0, 0]))
    assert out.to_dict("list") == {"id": [1, 2], "v": ["new", "x"]}


def test_parse_timestamps_with_format_and_utc() -> None:
    transform = compile_transform(
        "p", steps({"parse_timestamps": {"at": {"format": "%d/%m/%Y %H:%M", "utc": True}}})
    )
    out = transform(frame(at=["21/11/2026 10:30", "01/01/2026 00:00"]))
    assert str(out["at"].iloc[0]) == "2026-11-21 10:30:00+00:00"


def test_operators_arrow_columns_lack_still_work() -> None:
    transform = compile_transform("p", steps({"filter": "n % 2 == 0"}, {"derive": {"r": "n % 3"}}))
    out = transform(frame(n=[1, 2, 3, 4]))
    assert out["n"].tolist() == [2, 4]
    assert out["r"].tolist() == [2, 1]


def test_filter_drops_rows_where_comparison_is_null() -> None:
    out = compile_transform("p", steps({"filter": "n > 1"}))(frame(n=[1, None, 5]))
    assert out["n"].tolist() == [5]


def test_function_step_imports_module_function() -> None:
    transform = compile_transform(
        "orders", steps({"function": "examples.transforms:add_order_size"})
    )
    out = transform(frame(amount=[10.0, 100.0, 1000.0]))
    assert out["order_size"].tolist() == ["small", "medium", "large"]


def test_unknown_function_is_a_config_error_naming_pipeline_and_step() -> None:
    with pytest.raises(ConfigError, match=r"pipeline 'orders'.*step 1 \(function\)"):
        compile_transform("orders", steps({"function": "examples.transforms:nope"}))


@pytest.mark.parametrize(
    ("declared", "data", "message"),
    [
        pytest.param(
            {"cast": {"qty": "int64"}},
            {"qty": ["1", "two"]},
            r"step 1 \(cast\), column 'qty'",
            id="bad-cast-names-column",
        ),
        pytest.param(
            {"rename": {"missing": "x"}},
            {"qty": [1]},
            r"step 1 \(rename\): column 'missing' not found",
            id="missing-column",
        ),
        pytest.param(
            {"parse_timestamps": {"at": "%Y-%m-%d"}},
            {"at": ["2026-13-45"]},
            r"step 1 \(parse_timestamps\), column 'at'",
            id="bad-timestamp",
        ),
        pytest.param(
            {"derive": {"total": "qty * nothing"}},
            {"qty": [1]},
            r"step 1 \(derive\), column 'total'",
            id="bad-derive-expression",
        ),
    ],
)
def test_failing_step_names_pipeline_step_and_column(
    declared: dict[str, object], data: dict[str, list[object]], message: str
) -> None:
    transform = compile_transform("orders", steps(declared))
    with pytest.raises(TransformError, match=message) as caught:
        transform(frame(**data))
    assert caught.value.pipeline == "orders"
    assert "pipeline 'orders'" in str(caught.value)


def table(**columns: list[object]) -> pa.Table:
    return pa.table(columns)


ARROW_AND_PANDAS = [
    pytest.param(
        [
            {"rename": {"Qty": "quantity", "Price": "price"}},
            {"cast": {"quantity": "int64", "price": "float64"}},
            {"filter": "quantity > 1 and price < 2"},
            {"derive": {"amount": "quantity * price", "half": "quantity / 2", "neg": "-quantity"}},
            {"fill_nulls": {"note": "none"}},
            {"drop": ["Extra"]},
        ],
        {
            "Qty": ["1", "2", "3", "4"],
            "Price": ["2.5", "1.5", None, "0.5"],
            "note": ["a", None, "c", None],
            "Extra": [0, 0, 0, 0],
        },
        id="arrow-steps",
    ),
    pytest.param(
        [{"filter": "n % 2 == 0"}, {"derive": {"r": "n % 3"}}, {"select": ["r", "n"]}],
        {"n": [1, 2, 3, 4]},
        id="pandas-only-operator-then-arrow-step",
    ),
    pytest.param(
        [{"filter": "(a >= 1) & ~(b == 'x')"}, {"derive": {"c": "1 < a <= 3", "k": "7"}}],
        {"a": [0, 1, 2, 3, None], "b": ["y", "x", "y", "y", "y"]},
        id="bitwise-booleans-chained-comparison-literal",
    ),
    pytest.param(
        [{"cast": {"at": "timestamp"}}, {"dedupe": ["id"]}, {"derive": {"id2": "id + 1"}}],
        {"id": [1, 1, 2], "at": ["2026-01-01 10:00:00", "2026-01-02 00:00:00", None]},
        id="text-to-timestamp-and-dedupe-in-pandas",
    ),
]


@pytest.mark.parametrize(("declared", "data"), ARROW_AND_PANDAS)
def test_arrow_steps_give_what_pandas_gives(
    declared: list[dict[str, object]], data: dict[str, list[object]]
) -> None:
    transform = compile_transform("p", steps(*declared))
    expected = pa.Table.from_pandas(transform(frame(**data)), preserve_index=False)
    got = transform.on_table(table(**data))
    assert got.column_names == expected.column_names
    assert got.to_pylist() == expected.to_pylist()
    assert got.schema.remove_metadata() == expected.schema.remove_metadata()


def test_declarative_steps_compile_to_arrow_and_functions_stay_pandas() -> None:
    transform = compile_transform(
        "p",
        steps(
            {"rename": {"a": "b"}},
            {"filter": "b > 1"},
            {"derive": {"c": "b * 2"}},
            {"derive": {"d": "b.abs()"}},
            {"function": "examples.transforms:add_order_size"},
        ),
    )
    assert [step.on_table is not None for step in transform.steps] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_arrow_path_failures_name_step_and_column_like_pandas() -> None:
    transform = compile_transform("orders", steps({"cast": {"qty": "int64"}}))
    with pytest.raises(TransformError, match=r"step 1 \(cast\), column 'qty'"):
        transform.on_table(table(qty=["1", "two"]))
    missing = compile_transform("orders", steps({"select": ["nope"]}))
    with pytest.raises(TransformError, match=r"step 1 \(select\): column 'nope' not found"):
        missing.on_table(table(qty=[1]))
    unknown = compile_transform("orders", steps({"derive": {"total": "qty * nothing"}}))
    with pytest.raises(TransformError, match=r"step 1 \(derive\), column 'total'"):
        unknown.on_table(table(qty=[1]))
