"""The raw zone keeps every input untouched; a replay re-loads it without duplicating rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.run.runner import RunRequest, run
from core.errors import RequestError, SourceNotFoundError
from tests.helpers import count, duckdb_settings, query, write_catalog
from tests.sources.api_server import Received, Reply, serve

TODAY = datetime.now(UTC).date()


def test_inputs_are_archived_and_a_replay_reloads_them_idempotently(tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - name: people
            source: {uri: "in/*.csv"}
            raw: {prefix: raw}
            destination: {table: people}
        """,
    )
    settings = duckdb_settings(tmp_path)
    (tmp_path / "in").mkdir()
    source = tmp_path / "in" / "a.csv"
    source.write_text("id,name\n1,a\n2,b\n", encoding="utf-8")
    run(RunRequest("people"), settings, catalog)

    day = tmp_path / "raw" / "pipeline=people" / f"dt={TODAY.isoformat()}"
    (archived,) = [p for p in day.rglob("*") if p.is_file()]
    assert archived.read_text(encoding="utf-8") == source.read_text(encoding="utf-8")
    lineage = query(settings, "select distinct _ferry_source_uri from ferry.people")

    source.unlink()  # the original is gone: the raw zone still has it
    for _ in range(2):
        replay = run(RunRequest("people", replay=(TODAY, TODAY)), settings, catalog)
        assert replay.rows_loaded == 2
        assert replay.files[0].reason == f"replayed from {archived}"
    assert count(settings, "people") == 2, "a replay replaces the object's rows"
    assert query(settings, "select distinct _ferry_source_uri from ferry.people") == lineage


def test_replay_of_an_empty_range_or_without_raw_zone_is_a_clear_error(tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: kept, source: {uri: "in/*.csv"}, raw: {prefix: raw}, destination: {table: k}}
          - {name: plain, source: {uri: "in/*.csv"}, destination: {table: p}}
        """,
    )
    settings = duckdb_settings(tmp_path)
    with pytest.raises(SourceNotFoundError, match="raw zone holds nothing"):
        run(RunRequest("kept", replay=(TODAY, TODAY)), settings, catalog)
    with pytest.raises(RequestError, match="keeps no raw zone"):
        run(RunRequest("plain", replay=(TODAY, TODAY)), settings, catalog)


def test_api_pages_are_archived_and_replayed_by_key(tmp_path: Path) -> None:
    with serve() as api:
        api.route(
            "/items", lambda _: Reply(body={"data": [{"id": 1, "v": "x"}, {"id": 2, "v": "y"}]})
        )
        catalog = write_catalog(
            tmp_path,
            f"""
            pipelines:
              - name: items
                source: {{kind: api, base_url: "{api.base_url}", path: /items, data_selector: data,
                          paginator: single_page, allowed_hosts: ["127.0.0.1"]}}
                raw: {{prefix: raw}}
                destination: {{table: items, write_disposition: merge, primary_key: [id]}}
            """,
        )
        settings = duckdb_settings(tmp_path)
        run(RunRequest("items"), settings, catalog)
        seen: list[Received] = list(api.received)

    pages = list((tmp_path / "raw" / "pipeline=items").rglob("*.jsonl"))
    assert [json.loads(line)["id"] for line in pages[0].read_text().splitlines()] == [1, 2]
    replay = run(RunRequest("items", replay=(TODAY, TODAY)), settings, catalog)
    assert replay.rows_loaded == 2
    assert count(settings, "items") == 2
    assert len(seen) == 1, "a replay reads the raw zone, not the API"
