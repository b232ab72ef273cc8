"""The pipelines file: validated whole at start, with errors naming pipeline, field, problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.run.catalog import load_catalog
from core.errors import ConfigError, RequestError, UnknownPipelineError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipelines.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_is_valid() -> None:
    catalog = load_catalog(EXAMPLES)
    assert {"orders", "customers", "exchange-rates"} <= set(catalog.pipelines)
    assert catalog.get("orders").destination.primary_key == ["order_id"]


def test_every_problem_is_reported_with_pipeline_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
pipelines:
  - name: orders
    source: {kind: files, uri: "gs://Bad_Bucket/x.csv"}
    destination: {table: orders, write_disposition: merge}
  - name: events
    source: {kind: api, base_url: "ftp://host"}
    destination: {table: "bad-table"}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    message = str(caught.value)
    assert "pipeline 'orders', field source.uri" in message
    assert "not a valid GCS bucket name" in message
    assert "pipeline 'orders', field destination" in message
    assert "needs primary_key or merge_key" in message
    assert "pipeline 'events', field source.base_url" in message
    assert "pipeline 'events', field destination.table" in message


def test_unknown_field_and_step_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
pipelines:
  - name: p
    source: {kind: files, uri: "a/*.csv", delimitr: ";"}
    transform: [{explode: x}]
    destination: {table: t}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    assert caught.value.details["problems"] == [
        "pipeline 'p': unknown key 'delimitr' in source; did you mean 'csv.delimiter'?",
        "pipeline 'p': unknown transform step 'explode' at step 1",
    ]


def test_a_typo_is_one_line_naming_the_nearest_valid_name(tmp_path: Path) -> None:
    """Issue 22 #3: one line per typo, 1-based, with difflib's nearest name."""
    path = write(
        tmp_path,
        """
pipelines:
  - name: p
    source: {uri: "a/*.csv", compresion: gzip}
    transform:
      - rename: {a: b}
      - fitler: "x > 0"
      - {keep: first, dedupe: [id]}
      - cast: {x: int65}
    destination: {table: t, primary_kye: [id]}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    problems = caught.value.details["problems"]
    assert problems[:2] == [
        "pipeline 'p': unknown key 'compresion' in source; did you mean 'compression'?",
        "pipeline 'p': unknown transform step 'fitler' at step 2; did you mean 'filter'?",
    ]
    assert problems[2].startswith("pipeline 'p', field transform[4].cast.x: Input should be")
    assert problems[3:] == [
        "pipeline 'p': unknown key 'primary_kye' in destination; did you mean 'primary_key'?"
    ]


def test_every_problem_of_pipelines_functions_and_models_at_once(tmp_path: Path) -> None:
    """Issue 22 #3: a bad pipeline and two bad models are reported by one validation."""
    path = write(
        tmp_path,
        """
pipelines:
  - name: bad
    source: {uri: "a/*.csv"}
    destination: {table: bad, write_disposition: merge}
  - name: ok
    source: {uri: "a/*.csv"}
    transform: [{function: "no_such_module:f"}]
    destination: {table: ok}
models:
  - {name: m1, sql: "SELECT * FROM missing_table"}
  - {name: m2, sql: "SELECT 1", materialization: snapshot}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    problems = caught.value.details["problems"]
    assert len(problems) == 4, problems
    assert problems[0] == (
        "pipeline 'bad', field destination: write_disposition 'merge' needs primary_key or "
        "merge_key"
    )
    assert problems[1].startswith("model 'm2', field materialization: Input should be")
    assert problems[2].startswith("pipeline 'ok', step 1 (function): cannot import")
    assert problems[3].startswith("model 'm1': reads table 'missing_table'")


def test_duplicate_names_and_bad_yaml(tmp_path: Path) -> None:
    dup = "pipelines:\n" + "  - {name: p, source: {uri: a.csv}, destination: {table: t}}\n" * 2
    with pytest.raises(ConfigError, match="declared twice"):
        load_catalog(write(tmp_path, dup))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_catalog(write(tmp_path, "pipelines: [unclosed"))
    with pytest.raises(ConfigError, match="not found"):
        load_catalog(tmp_path / "nope.yaml")


def test_unknown_pipeline_lists_known_ones() -> None:
    with pytest.raises(UnknownPipelineError, match=r"no pipeline named 'nope' \(known: .*orders"):
        load_catalog(EXAMPLES).get("nope")


def test_pipeline_for_uri(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
pipelines:
  - {name: a, source: {uri: "gs://bkt/a/*.csv"}, destination: {table: a}}
  - {name: b, source: {uri: "gs://bkt/b/*.csv"}, destination: {table: b}}
  - {name: c, source: {uri: "gs://bkt/b/"}, destination: {table: c}}
""",
    )
    catalog = load_catalog(path)
    assert catalog.pipeline_for_uri("gs://bkt/a/x.csv").name == "a"
    with pytest.raises(UnknownPipelineError):
        catalog.pipeline_for_uri("gs://elsewhere/a/x.csv")
    with pytest.raises(RequestError, match="several pipelines"):
        catalog.pipeline_for_uri("gs://bkt/b/x.csv")


def test_unimportable_function_step_fails_at_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
pipelines:
  - name: p
    source: {uri: a.csv}
    transform: [{function: "nowhere.module:fn"}]
    destination: {table: t}
""",
    )
    with pytest.raises(ConfigError, match=r"pipeline 'p'.*cannot import 'nowhere.module:fn'"):
        load_catalog(path)


def test_models_reading_a_bad_model_are_not_blamed_for_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
pipelines:
  - {name: p, source: {uri: "a/*.csv"}, destination: {table: orders}}
models:
  - {name: base, sql: "SELECT FROM WHERE orders"}
  - {name: top, sql: "SELECT * FROM base"}
  - {name: other, sql: "SELECT * FROM nowhere"}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    problems = caught.value.details["problems"]
    assert [p.split(":")[0] for p in problems] == ["model 'base'", "model 'other'"]
