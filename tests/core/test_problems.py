"""core/problems.py: the one ValidationError -> sentences formatter."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from core.problems import problems_of
from core.settings import load_settings
from core.spec import PipelineSpec


def problems(entry: dict[str, object]) -> list[str]:
    with pytest.raises(ValidationError) as raised:
        PipelineSpec.model_validate(entry)
    return [str(p) for p in problems_of(raised.value, model=PipelineSpec)]


def test_paths_are_1_based_without_union_tags_or_pydantic_prefixes() -> None:
    found = problems(
        {
            "name": "p",
            "source": {"uri": "a.csv", "csv": {"delimiter": ";;"}},
            "transform": [{"drop": ["x"]}, {"cast": {"x": "int65"}}],
            "destination": {"table": "t", "write_disposition": "merge"},
        }
    )
    assert found[0] == "field source.csv.delimiter: must be exactly one character"
    assert found[1].startswith("field transform[2].cast.x: Input should be 'string'")
    assert found[2] == "field destination: write_disposition 'merge' needs primary_key or merge_key"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            {"source": {"uri": "a.csv", "formt": "csv"}},
            "unknown key 'formt' in source; did you mean 'format'?",
        ),
        (
            {"source": {"uri": "a.csv"}, "transform": [{"selct": ["a"]}]},
            "unknown transform step 'selct' at step 1; did you mean 'select'?",
        ),
        (
            {"source": {"uri": "a.csv"}, "transform": ["filter"]},
            "a transform step at step 1 must be a mapping with one of: cast, dedupe, derive, "
            "drop, fill_nulls, filter, function, parse_timestamps, rename, select",
        ),
        (
            {
                "source": {"uri": "a.csv"},
                "transform": [{"keep": "first", "dedupe": ["a"]}],
                "destinaton": {},
            },
            "unknown key 'destinaton'; did you mean 'destination'?",
        ),
    ],
    ids=["key", "step", "not-a-mapping", "top-level-key"],
)
def test_an_unknown_name_is_one_line_with_the_nearest_valid_one(
    entry: dict[str, object], problem: str
) -> None:
    found = problems({"name": "p", "destination": {"table": "t"}, **entry})
    assert problem in found


def test_settings_problems_name_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_BATCH_BYTES", "lots")
    monkeypatch.setenv("FERRY_DESTINATION", "bigquery")
    monkeypatch.delenv("FERRY_BIGQUERY_PROJECT", raising=False)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.message.startswith(
        "invalid settings: FERRY_BATCH_BYTES: Input should be a valid integer"
    )


def test_a_misspelt_required_key_is_one_line_and_a_misplaced_one_names_its_section() -> None:
    found = problems(
        {"name": "p", "source": {"uri": "a.csv", "delimitr": ";"}, "destination": {"tabel": "t"}}
    )
    assert found == [
        "unknown key 'delimitr' in source; did you mean 'csv.delimiter'?",
        "unknown key 'tabel' in destination; did you mean 'table'?",
    ]
