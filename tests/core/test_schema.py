"""The pipelines file's JSON Schema (`ferry schema`), as an editor's YAML language server uses
it: every field described, the example files valid, a typo flagged."""

from __future__ import annotations

from pathlib import Path

import jsonschema_rs  # schemathesis's validator, in requirements-dev.txt
import pytest
import yaml

from core.spec import PipelinesFile
from tests.helpers import REPO


def test_every_field_has_a_description() -> None:
    schema = PipelinesFile.model_json_schema()
    definitions = {**schema["$defs"], "PipelinesFile": schema}
    undescribed = [
        f"{name}.{field}"
        for name, definition in definitions.items()
        for field, body in definition.get("properties", {}).items()
        if not body.get("description")
    ]
    assert undescribed == [], "add a docstring under each field (core/spec.py, core/model_spec.py)"


@pytest.mark.parametrize(
    "path", [REPO / "examples" / "pipelines.yaml", REPO / "examples" / "lake" / "pipelines.yaml"]
)
def test_the_example_files_are_valid_for_an_editor(path: Path) -> None:
    validator = jsonschema_rs.validator_for(PipelinesFile.model_json_schema())
    assert [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))] == []


def test_an_editor_flags_an_unknown_step_and_key() -> None:
    validator = jsonschema_rs.validator_for(PipelinesFile.model_json_schema())
    entry = {"name": "p", "source": {"uri": "a.csv"}, "destination": {"table": "t"}}
    assert validator.is_valid({"pipelines": [entry]})
    assert not validator.is_valid({"pipelines": [{**entry, "transform": [{"fitler": "x"}]}]})
    assert not validator.is_valid({"pipelines": [{**entry, "destination": {"tabel": "t"}}]})
