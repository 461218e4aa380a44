"""API key, local mode binding, CORS, response headers, settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import Settings, create_app
from tests.server.aw_helpers import SpanFactory


@pytest.fixture
def keyed(tmp_path: Path, signing_key: Path) -> TestClient:
    settings = Settings(db_path=tmp_path / "k.db", signing_key_path=signing_key, api_key="s3cret-key",
                        cors_origins=("http://localhost:3000",))
    with TestClient(create_app(settings=settings), base_url="http://localhost") as client:
        yield client


def test_api_key_guards_every_api_route(keyed: TestClient, make_span: SpanFactory) -> None:
    assert keyed.get("/health").status_code == 200
    assert keyed.get("/health").json()["local_mode"] is False
    for method, path in (("GET", "/api/traces"), ("GET", "/api/metrics"), ("POST", "/api/ingest"),
                         ("GET", "/api/alerts"), ("POST", "/api/alerts/sdk-alert"), ("GET", "/api/reports/monthly"),
                         ("GET", "/api/circuit-breaker/status"), ("DELETE", "/api/alerts/1")):
        response = keyed.request(method, path)
        assert response.status_code == 401, path
        assert "API key" in response.json()["detail"]
    assert keyed.get("/api/traces", headers={"X-API-Key": "wrong"}).status_code == 401
    assert keyed.get("/api/traces", headers={"X-API-Key": "s3cret-key "}).status_code == 401
    assert keyed.post("/api/ingest", json=make_span(), headers={"X-API-Key": "s3cret-key"}).status_code == 202
    assert keyed.post("/api/ingest", json=make_span(),
                      headers={"X-AeneasSoft-API-Key": "s3cret-key"}).json()["accepted"] == 1
    assert keyed.get("/api/traces", headers={"Authorization": "Bearer s3cret-key"}).json()["total"] == 2


def test_cors_only_for_configured_origins(keyed: TestClient) -> None:
    preflight = keyed.options("/api/traces", headers={"Origin": "http://localhost:3000",
                                                      "Access-Control-Request-Method": "GET",
                                                      "Access-Control-Request-Headers": "X-API-Key"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    other = keyed.options("/api/traces", headers={"Origin": "http://evil.example",
                                                  "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in other.headers


def test_dashboard_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>AgentWatch</title>" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "http://" not in page.text and "https://" not in page.text  # nothing loaded from elsewhere
    for asset in ("app.js", "dom.js", "views.js", "trace.js", "charts.js", "app.css"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200, asset
        # Untrusted text must never be parsed as markup: no innerHTML, outerHTML, insertAdjacentHTML, eval.
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "document.write", "new Function"):
            assert sink not in response.text, (asset, sink)


def test_settings_from_the_environment() -> None:
    local = Settings.from_env({})
    assert local.host == "127.0.0.1" and local.port == 3001 and local.local_mode
    assert local.data_retention_days == 30 and local.zero_data_retention is False
    keyed = Settings.from_env({"API_KEY": "k", "PORT": "4000", "CORS_ORIGINS": "http://a, http://b",
                               "ZERO_DATA_RETENTION": "true", "DATA_RETENTION_DAYS": "0", "AGENTWATCH_DB": "/tmp/x.db"})
    assert keyed.host == "0.0.0.0" and keyed.port == 4000 and not keyed.local_mode
    assert keyed.cors_origins == ("http://a", "http://b") and keyed.zero_data_retention
    assert keyed.data_retention_days == 0 and keyed.db_path == Path("/tmp/x.db")
    assert keyed.resolved_signing_key_path == Path("/tmp/x.signing-key.pem")
    assert Settings.from_env({"API_KEY": "k", "HOST": "127.0.0.1"}).host == "127.0.0.1"
    assert Settings.from_env({}, host="0.0.0.0", port=9).host == "0.0.0.0"
    for bad in ({"PORT": "x"}, {"ZERO_DATA_RETENTION": "maybe"}, {"DATA_RETENTION_DAYS": "-1"},
                {"AGENTWATCH_SYNCHRONOUS": "OFF"}):
        with pytest.raises(ValueError):
            Settings.from_env(bad)


def test_cors_star_is_refused_when_no_credentials_are_checked(tmp_path: Path, signing_key: Path) -> None:
    """``CORS_ORIGINS=*`` turned the write ``Origin`` check off for every web site: on a collector that checks no
    credentials, any page could read every trace and kill agents (a cross-site kill answered 200). Refused at
    start; with an API key, writes need the key and ``*`` stays allowed."""
    with pytest.raises(ValueError, match="CORS_ORIGINS=\\*.*API_KEY"):
        Settings.from_env({"CORS_ORIGINS": "http://localhost:3000, *"})
    with pytest.raises(ValueError, match="CORS_ORIGINS"):
        create_app(settings=Settings(db_path=tmp_path / "s.db", signing_key_path=signing_key, cors_origins=("*",)))
    assert Settings.from_env({"CORS_ORIGINS": "*", "API_KEY": "k"}).cors_origins == ("*",)
