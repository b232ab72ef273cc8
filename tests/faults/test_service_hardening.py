"""Attacks on the HTTP service's edges (issue 14): `/runs` open while push auth is on, and
responses without the headers that stop sniffing, framing and script loading."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.edges.server import create_app
from core.settings import Settings, load_settings
from tests.helpers import count, duckdb_settings, write_catalog
from tests.oidc import AUDIENCE, PUSHER, CertsServer, SigningKey, claims

RUNS_AUDIENCE = "https://ferry.example.run.app/runs"
ORCHESTRATOR = "orchestrator@project.iam.gserviceaccount.com"
PIPELINES = """
pipelines:
  - {name: people, source: {uri: "people.csv"}, destination: {table: people}}
"""
HISTORY_ROUTES = ["/runs", "/runs/no-such-run", "/ui/runs"]


def service_settings(tmp_path: Path, **overrides: Any) -> Settings:
    (tmp_path / "people.csv").write_text("id,name\n1,ada\n2,grace\n3,linus\n")
    write_catalog(tmp_path, PIPELINES)
    return duckdb_settings(tmp_path, **overrides)


@pytest.fixture
def guarded(tmp_path: Path, certs_server: CertsServer) -> Settings:
    """Push auth and run auth both on, each with its own audience and callers."""
    return service_settings(
        tmp_path,
        push_auth_audience=AUDIENCE,
        push_auth_service_accounts=[PUSHER],
        push_auth_certs_url=certs_server.url,
        runs_auth_audience=RUNS_AUDIENCE,
        runs_auth_allowed_callers=[ORCHESTRATOR],
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("token_claims", "status", "code"),
    [
        pytest.param(None, 401, "unauthenticated", id="no-token"),
        pytest.param(
            {"aud": AUDIENCE, "email": ORCHESTRATOR}, 401, "unauthenticated", id="push-audience"
        ),
        pytest.param({"aud": RUNS_AUDIENCE}, 403, "forbidden", id="the-pusher-account"),
        pytest.param(
            {"aud": RUNS_AUDIENCE, "email": "intruder@other.iam.gserviceaccount.com"},
            403,
            "forbidden",
            id="unknown-account",
        ),
    ],
)
def test_runs_without_an_allowed_caller_run_nothing(
    guarded: Settings,
    google_key: SigningKey,
    token_claims: dict[str, Any] | None,
    status: int,
    code: str,
) -> None:
    headers = {} if token_claims is None else bearer(google_key.sign(claims(**token_claims)))
    with TestClient(create_app(guarded)) as client:
        response = client.post("/runs", json={"pipeline": "people"}, headers=headers)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        for path in HISTORY_ROUTES:
            history = client.get(path, headers=headers)
            assert history.status_code == status, (path, history.text)
    assert count(guarded, "people") == 0
    assert not (guarded.data_dir / "runs").exists() or not any(
        (guarded.data_dir / "runs").iterdir()
    )


def test_runs_with_the_orchestrator_token_load(guarded: Settings, google_key: SigningKey) -> None:
    headers = bearer(google_key.sign(claims(aud=RUNS_AUDIENCE, email=ORCHESTRATOR)))
    with TestClient(create_app(guarded)) as client:
        response = client.post("/runs", json={"pipeline": "people"}, headers=headers)
        assert response.status_code == 200, response.text
        run_id = response.json()["run_id"]
        assert client.get(f"/runs/{run_id}", headers=headers).status_code == 200
        listed = client.get("/runs", headers=headers).json()["runs"]
        assert [run["run_id"] for run in listed] == [run_id]
        assert client.get("/ui/runs", headers=headers).status_code == 200
        # push routes keep their own audience: the orchestrator's token does not push
        assert client.post("/pubsub", headers=headers, content=b"{}").status_code == 401
    assert count(guarded, "people") == 3


def test_run_auth_off_is_warned_about_when_push_auth_is_on(
    tmp_path: Path, certs_server: CertsServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = service_settings(
        tmp_path,
        push_auth_audience=AUDIENCE,
        push_auth_service_accounts=[PUSHER],
        push_auth_certs_url=certs_server.url,
    )
    with caplog.at_level(logging.WARNING, logger="ferry.auth"):
        create_app(settings)
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "runs_auth_off"]
    assert len(warnings) == 1 and "FERRY_RUNS_AUTH_AUDIENCE" in warnings[0].getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ferry.auth"):
        create_app(service_settings(tmp_path))  # both off: Cloud Run IAM's job, no warning
    assert [r for r in caplog.records if getattr(r, "event", None) == "runs_auth_off"] == []


def test_run_auth_needs_allowed_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import ConfigError

    monkeypatch.setenv("FERRY_RUNS_AUTH_AUDIENCE", RUNS_AUDIENCE)
    with pytest.raises(ConfigError, match="FERRY_RUNS_AUTH_ALLOWED_CALLERS"):
        load_settings()
    monkeypatch.setenv("FERRY_RUNS_AUTH_ALLOWED_CALLERS", f"{ORCHESTRATOR}, other@x.example")
    assert load_settings().runs_auth_allowed_callers == [ORCHESTRATOR, "other@x.example"]


# --- headers ------------------------------------------------------------------------------------


def directives(policy: str) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


def test_every_response_refuses_sniffing_and_referrers(tmp_path: Path) -> None:
    with TestClient(create_app(service_settings(tmp_path))) as client:
        responses = [
            client.get("/healthz"),
            client.post("/runs", json={"pipeline": "people"}),
            client.post("/runs", json={"pipeline": "nope"}),
            client.get("/runs"),
            client.get("/ui/runs"),
            client.get("/no-such-path"),
        ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["referrer-policy"] == "no-referrer", response.url
        policy = directives(response.headers["content-security-policy"])
        assert policy["frame-ancestors"] == "'none'", response.url
        assert policy["default-src"] == "'none'", response.url


def test_history_page_allows_only_its_own_style(tmp_path: Path) -> None:
    with TestClient(create_app(service_settings(tmp_path))) as client:
        client.post("/runs", json={"pipeline": "people"})
        page = client.get("/ui/runs")
    assert page.status_code == 200 and '<tr class="run"' in page.text
    policy = directives(page.headers["content-security-policy"])
    assert policy["frame-ancestors"] == "'none'" and policy["default-src"] == "'none'"
    assert (
        "script-src" not in policy
        and "unsafe-inline" not in page.headers["content-security-policy"]
    )
    assert policy["style-src"].startswith("'sha256-")
    assert page.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("env", "docs_served"),
    [
        pytest.param({"K_SERVICE": "ferry"}, False, id="cloud-run"),
        pytest.param({"FERRY_ENV": "production"}, False, id="production"),
        pytest.param({"K_SERVICE": "ferry", "FERRY_DOCS": "true"}, True, id="cloud-run-opt-in"),
        pytest.param({}, True, id="local"),
    ],
)
def test_docs_pages_with_cdn_scripts_are_off_in_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], docs_served: bool
) -> None:
    for name in ("K_SERVICE", "FERRY_ENV", "FERRY_DOCS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with TestClient(create_app(service_settings(tmp_path))) as client:
        docs = client.get("/docs")
        assert (docs.status_code == 200) is docs_served
        if not docs_served:
            assert "cdn" not in docs.text
        # the machine-readable document has no scripts: always served
        assert client.get("/openapi.json").status_code == 200
