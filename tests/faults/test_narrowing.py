"""Escapes through a pipeline's source pattern (issues 10 and 14): a push for an object the
pattern's `*` does not cover, `source` narrowing on a string prefix (`land` -> `land-secrets`),
a narrowed glob listing more than the pattern allows, and local symlinks pointing out.

Each test loads real rows (GCS emulator or local files into DuckDB) and asserts that only the
objects the configured pattern covers reached the destination.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.edges.server import create_app
from core.settings import Settings
from tests.emulators import GcsEmulator
from tests.helpers import count, duckdb_settings, query, write_catalog
from tests.pubsub_messages import gcs_notification, wrapped_push

CSV = b"id,name\n1,ada\n"
SECRET_CSV = b"id,name\n666,secret\n"


def upload(gcs: GcsEmulator, bucket: str, name: str, data: bytes) -> int:
    gcs.client().bucket(bucket).blob(name).upload_from_string(data)
    stored = gcs.client().bucket(bucket).get_blob(name)
    assert stored is not None
    return int(stored.generation)


def catalog(folder: Path, pattern: str) -> None:
    write_catalog(
        folder,
        f"""
        pipelines:
          - {{name: people, source: {{uri: "{pattern}"}}, destination: {{table: people}}}}
        """,
    )


def gcs_settings(tmp_path: Path, gcs: GcsEmulator) -> Settings:
    return duckdb_settings(tmp_path, storage_emulator_host=gcs.endpoint, gcs_project="test-project")


def post_run(settings: Settings, body: dict[str, Any]) -> Any:
    with TestClient(create_app(settings)) as client:
        return client.post("/runs", json=body)


def loaded_uris(settings: Settings) -> list[str]:
    if count(settings, "people") == 0:
        return []
    rows = query(settings, "select distinct _ferry_source_uri from ferry.people order by 1")
    return [row[0] for row in rows]


# --- push: one glob rule for notifications and listing -----------------------------------------


def test_push_for_an_object_below_a_single_star_is_ignored(
    tmp_path: Path, gcs_env: GcsEmulator, unique_name: str
) -> None:
    gcs_env.client().create_bucket(unique_name)
    generation = upload(gcs_env, unique_name, "raw/sub/x.csv", SECRET_CSV)
    catalog(tmp_path, f"gs://{unique_name}/raw/*.csv")
    settings = gcs_settings(tmp_path, gcs_env)
    headers, body = wrapped_push(*gcs_notification(unique_name, "raw/sub/x.csv", generation))
    with TestClient(create_app(settings)) as client:
        response = client.post("/pubsub", headers=headers, content=body)
    # `run` never lists raw/sub/x.csv under raw/*.csv, so a push must not load it either
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ignored"
    assert count(settings, "people") == 0


# --- `source` narrowing on segment boundaries ---------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "source", "secret"),
    [
        pytest.param("gs://{b}", "gs://{b}-secrets/**", "gs://{b}-secrets/x.csv", id="bucket"),
        pytest.param(
            "gs://{b}/exports",
            "gs://{b}/exports-private/*",
            "gs://{b}/exports-private/x.csv",
            id="prefix",
        ),
        pytest.param(
            "gs://{b}/exports/*.csv",
            "gs://{b}/exports*/*.csv",
            "gs://{b}/exports-private/x.csv",
            id="glob-prefix",
        ),
    ],
)
def test_gcs_source_cannot_escape_by_a_string_prefix(
    tmp_path: Path, gcs_env: GcsEmulator, unique_name: str, pattern: str, source: str, secret: str
) -> None:
    pattern, source, secret = (
        value.replace("{b}", unique_name) for value in (pattern, source, secret)
    )
    client = gcs_env.client()
    client.create_bucket(unique_name)
    client.create_bucket(f"{unique_name}-secrets")
    upload(gcs_env, unique_name, "exports/a.csv", CSV)
    bucket, _, name = secret[len("gs://") :].partition("/")
    upload(gcs_env, bucket, name, SECRET_CSV)
    catalog(tmp_path, pattern)
    settings = gcs_settings(tmp_path, gcs_env)

    response = post_run(settings, {"pipeline": "people", "source": source})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "request_invalid"
    assert count(settings, "people") == 0


def test_local_source_cannot_escape_by_a_string_prefix(tmp_path: Path) -> None:
    (tmp_path / "in" / "exports").mkdir(parents=True)
    (tmp_path / "in" / "exports_private").mkdir()
    (tmp_path / "in" / "exports" / "a.csv").write_bytes(CSV)
    (tmp_path / "in" / "exports_private" / "x.csv").write_bytes(SECRET_CSV)
    catalog(tmp_path, "in/exports")
    settings = duckdb_settings(tmp_path)

    response = post_run(settings, {"pipeline": "people", "source": "in/exports_private/*"})

    assert response.status_code == 400, response.text
    assert count(settings, "people") == 0
    # the folder itself still narrows, on a segment boundary
    response = post_run(settings, {"pipeline": "people", "source": "in/exports/*.csv"})
    assert response.status_code == 200, response.text
    assert loaded_uris(settings) == [str(tmp_path / "in" / "exports" / "a.csv")]


def test_a_source_naming_a_sub_folder_loads_that_folder(tmp_path: Path) -> None:
    (tmp_path / "in" / "exports" / "2026").mkdir(parents=True)
    (tmp_path / "in" / "exports" / "a.csv").write_bytes(CSV)
    (tmp_path / "in" / "exports" / "2026" / "b.csv").write_bytes(b"id,name\n2,grace\n")
    catalog(tmp_path, "in/exports")
    settings = duckdb_settings(tmp_path)

    response = post_run(settings, {"pipeline": "people", "source": "in/exports/2026"})

    assert response.status_code == 200, response.text
    assert loaded_uris(settings) == [str(tmp_path / "in" / "exports" / "2026" / "b.csv")]
    response = post_run(settings, {"pipeline": "people", "source": "in/exports/2027"})
    assert response.status_code == 404, response.text


# --- every listed object is re-checked against the configured pattern -------------------------


def test_narrowed_glob_loads_only_what_the_pattern_covers_on_gcs(
    tmp_path: Path, gcs_env: GcsEmulator, unique_name: str
) -> None:
    gcs_env.client().create_bucket(unique_name)
    upload(gcs_env, unique_name, "raw/a.csv", CSV)
    upload(gcs_env, unique_name, "raw/sub/x.csv", SECRET_CSV)
    catalog(tmp_path, f"gs://{unique_name}/raw/*.csv")
    settings = gcs_settings(tmp_path, gcs_env)

    response = post_run(settings, {"pipeline": "people", "source": f"gs://{unique_name}/raw/**"})

    assert response.status_code == 200, response.text
    assert loaded_uris(settings) == [f"gs://{unique_name}/raw/a.csv"]


def test_narrowed_glob_loads_only_what_the_pattern_covers_locally(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.csv").write_bytes(CSV)
    (tmp_path / "in" / "sub" / "x.csv").write_bytes(SECRET_CSV)
    catalog(tmp_path, "in/*.csv")
    settings = duckdb_settings(tmp_path)

    response = post_run(settings, {"pipeline": "people", "source": "in/**"})

    assert response.status_code == 200, response.text
    assert loaded_uris(settings) == [str(tmp_path / "in" / "a.csv")]


def test_narrowed_glob_with_nothing_inside_the_pattern_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.csv").write_bytes(CSV)
    (tmp_path / "in" / "sub" / "x.csv").write_bytes(SECRET_CSV)
    catalog(tmp_path, "in/*.csv")
    settings = duckdb_settings(tmp_path)

    response = post_run(settings, {"pipeline": "people", "source": "in/sub/**"})

    assert response.status_code == 404, response.text
    assert count(settings, "people") == 0


# --- local symlinks never lead outside the configured folder ----------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """land/a.csv, land/link.csv -> ../secret.csv, land/outside -> <another folder>."""
    land, elsewhere = tmp_path / "land", tmp_path / "elsewhere"
    land.mkdir()
    elsewhere.mkdir()
    (land / "a.csv").write_bytes(CSV)
    (tmp_path / "secret.csv").write_bytes(SECRET_CSV)
    (elsewhere / "s.csv").write_bytes(SECRET_CSV)
    (land / "link.csv").symlink_to(tmp_path / "secret.csv")
    (land / "outside").symlink_to(elsewhere, target_is_directory=True)
    return tmp_path


@pytest.mark.parametrize("pattern", ["land/*.csv", "land", "land/**"])
def test_listing_skips_files_that_resolve_outside_the_folder(linked: Path, pattern: str) -> None:
    catalog(linked, pattern)
    settings = duckdb_settings(linked)

    response = post_run(settings, {"pipeline": "people"})

    assert response.status_code == 200, response.text
    assert loaded_uris(settings) == [str(linked / "land" / "a.csv")]
    assert query(settings, "select id from ferry.people") == [(1,)]


@pytest.mark.parametrize("source", ["land/link.csv", "land/outside/s.csv", "land/outside/*.csv"])
def test_source_through_a_symlink_out_of_the_folder_is_refused(linked: Path, source: str) -> None:
    catalog(linked, "land/**")
    settings = duckdb_settings(linked)

    response = post_run(settings, {"pipeline": "people", "source": source})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "request_invalid"
    assert count(settings, "people") == 0
