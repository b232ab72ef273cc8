"""Quality checks over Arrow tables, pure: no run, no destination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from app.run.checks import FileChecks, has_checks
from core.errors import QualityCheckError
from core.spec import ChecksSpec

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def checks(**spec: Any) -> FileChecks:
    return FileChecks(ChecksSpec.model_validate(spec), "orders", "gs://b/a.csv", now=NOW)


def table(**columns: list[Any]) -> pa.Table:
    return pa.table(columns)


def test_no_checks_configured() -> None:
    assert not has_checks(ChecksSpec())
    assert has_checks(ChecksSpec(min_rows=1))


@pytest.mark.parametrize(
    ("spec", "data", "check"),
    [
        pytest.param({"not_null": ["id"]}, {"id": [1, None]}, "not_null", id="not_null"),
        pytest.param(
            {"accepted_values": {"country": ["DE", "FR"]}},
            {"country": ["DE", "XX"]},
            "accepted_values",
            id="accepted_values",
        ),
        pytest.param({"range": {"qty": {"min": 0}}}, {"qty": [3, -1]}, "range", id="below"),
        pytest.param({"range": {"qty": {"max": 10}}}, {"qty": [3, 11]}, "range", id="above"),
        pytest.param({"unique": ["id"]}, {"id": [1, 1]}, "unique", id="unique"),
        pytest.param({"not_null": ["nope"]}, {"id": [1]}, "config", id="missing-column"),
    ],
)
def test_a_failing_batch_names_the_check_and_the_column(
    spec: dict[str, Any], data: dict[str, list[Any]], check: str
) -> None:
    with pytest.raises(QualityCheckError, match=r"gs://b/a\.csv") as raised:
        checks(**spec).batch(table(**data))
    assert raised.value.details["check"] == check
    assert raised.value.pipeline == "orders"


def test_passing_batches() -> None:
    gate = checks(
        not_null=["id"],
        accepted_values={"country": ["DE", "FR"]},
        range={"qty": {"min": 0, "max": 10}},
        unique=["id"],
    )
    gate.batch(table(id=[1, 2], country=["DE", "FR"], qty=[0, 10]))
    gate.batch(table(id=[3], country=["FR"], qty=[5]))
    gate.finish()


def test_uniqueness_holds_across_batches_of_one_file() -> None:
    gate = checks(unique=["id", "day"])
    gate.batch(table(id=[1, 1], day=["a", "b"]))
    with pytest.raises(QualityCheckError, match="duplicate"):
        gate.batch(table(id=[1], day=["a"]))


def test_min_rows_counts_the_whole_file() -> None:
    gate = checks(min_rows=3)
    gate.batch(table(id=[1, 2]))
    with pytest.raises(QualityCheckError, match="2 row"):
        gate.finish()
    gate = checks(min_rows=3)
    gate.batch(table(id=[1, 2]))
    gate.batch(table(id=[3]))
    gate.finish()


def test_freshness_uses_the_newest_value_of_all_batches() -> None:
    spec = {"freshness": {"column": "at", "max_age_hours": 24}}
    stale, fresh = NOW - timedelta(hours=30), NOW - timedelta(hours=1)
    gate = checks(**spec)
    gate.batch(table(at=[stale]))
    gate.batch(table(at=[fresh]))
    gate.finish()
    gate = checks(**spec)
    gate.batch(table(at=[stale]))
    with pytest.raises(QualityCheckError, match="freshness"):
        gate.finish()
