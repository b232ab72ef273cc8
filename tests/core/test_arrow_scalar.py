"""core.arrow_types.scalar builds the same Arrow scalars as pa.scalar, without pandas."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from core.arrow_types import UTC_TIMESTAMP, scalar


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (5, None),
        (-(2**63), None),
        (5, pa.int32()),
        (7, pa.float64()),
        (1.25, None),
        (True, None),
        (False, None),
        ("héllo wörld", None),
        ("", None),
        (None, pa.string()),
        (datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), UTC_TIMESTAMP),
    ],
)
def test_scalar_equals_pyarrows_own(value: object, type_: pa.DataType | None) -> None:
    assert scalar(value, type_).equals(pa.scalar(value, type_))  # type: ignore[arg-type]


def test_zoned_and_naive_datetimes_are_utc() -> None:
    two_hours_ahead = datetime(2026, 1, 2, 5, tzinfo=timezone(timedelta(hours=2)))
    assert scalar(two_hours_ahead).as_py() == datetime(2026, 1, 2, 3, tzinfo=UTC)
    assert scalar(datetime(2026, 1, 2, 3)).as_py() == datetime(2026, 1, 2, 3, tzinfo=UTC)


def test_building_scalars_does_not_import_pandas() -> None:
    code = (
        "import sys; from core.arrow_types import scalar; "
        "[scalar(v) for v in (1, 1.5, True, 'x')]; print('pandas' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
