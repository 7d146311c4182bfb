"""GET /api/health through the real HTTP server, and functions-framework's loader."""
from __future__ import annotations

import httpx

from tests.support.server import running_server


def test_health_ok_with_database(fresh_dsn):
    with running_server(DATABASE_URL=fresh_dsn, SUPABASE_URL=None) as base:
        r = httpx.get(f"{base}/api/health")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "database": "reachable"}
    assert r.headers["x-request-id"].startswith("req_"), "every response carries a request id"


def test_health_503_when_database_unreachable(tmp_path):
    dsn = f"postgresql://postgres@/nope?host={tmp_path}&connect_timeout=1"
    with running_server(DATABASE_URL=dsn, SUPABASE_URL=None) as base:
        r = httpx.get(f"{base}/api/health", timeout=15)
    assert r.status_code == 503, r.text
    assert r.json()["database"] == "unreachable"


def test_health_503_names_missing_setting():
    with running_server(DATABASE_URL=None, SUPABASE_URL=None) as base:
        r = httpx.get(f"{base}/api/health")
    assert r.status_code == 503
    assert "DATABASE_URL" in r.json()["error"]["message"], "the 503 names the missing setting"


def test_health_rejects_wrong_method_and_unknown_path(fresh_dsn):
    with running_server(DATABASE_URL=fresh_dsn) as base:
        r = httpx.post(f"{base}/api/health")
        missing = httpx.get(f"{base}/api/nope")
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


def test_health_loads_with_functions_framework(fresh_dsn, monkeypatch):
    import functions_framework

    from lib.core.config import reset_settings
    from lib.core.db import set_database

    monkeypatch.setenv("DATABASE_URL", fresh_dsn)
    reset_settings()
    set_database(None)
    try:
        app = functions_framework.create_app("health", "functions/health.py", "http")
        r = app.test_client().get("/")
        assert r.status_code == 200 and r.get_json()["status"] == "ok"
    finally:
        set_database(None)
        reset_settings()
