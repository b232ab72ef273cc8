"""app/models/compile.py: the copy of dlt's table naming that the start-up check uses."""

from __future__ import annotations

import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention
from hypothesis import given, settings
from hypothesis import strategies as st

from app.models.compile import stored_name

NAMES = [
    "AppRows",
    "app_rows",
    "App_Rows",
    "app_rows__rejects",
    "AppRows__Rejects",
    "ordersV2",
    "HTTPServerLog",
    "2024_sales",
    "trailing__",
    "__leading",
    "a___b",
    "a-b+c*d@e|f",
    "  spaced name  ",
    "naïve_Café",
    "数据",
    "x__ __y",
    "",
]

NAME_CHARACTERS = st.sampled_from(list("aAzZ09_ -+*@|.$éÉß数٣\t")) | st.characters()


@pytest.mark.parametrize("name", NAMES)
def test_stored_name_is_dlts_name(name: str) -> None:
    assert stored_name(name) == NamingConvention().normalize_path(name)


@settings(max_examples=500, deadline=None)
@given(st.text(NAME_CHARACTERS, max_size=24))
def test_stored_name_is_dlts_name_for_any_text(name: str) -> None:
    assert stored_name(name) == NamingConvention().normalize_path(name)
