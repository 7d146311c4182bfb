"""Both database transports call the same SQL and fail the same way.

The PostgREST transport is checked at the HTTP layer with respx: the request
supabase-py sends, and how PostgREST's error bodies map to our errors.
"""
from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
import respx

from lib.core.db import PostgrestDatabase, PsycopgDatabase
from lib.core.errors import Conflict, Forbidden, NotFound, PaymentRequired, ServiceUnavailable, TollboothError

SUPA = "http://127.0.0.1:54321"
KEY = "xxx.yyy.zzz"


@pytest.fixture
def rest():
    with respx.mock(base_url=f"{SUPA}/rest/v1", assert_all_called=False) as mock:
        yield mock


def test_postgrest_rpc_request_shape(rest):
    route = rest.post("/rpc/health_check").mock(return_value=httpx.Response(200, json={"ok": True}))
    db = PostgrestDatabase(SUPA, KEY)
    assert db.rpc("health_check", {}) == {"ok": True}
    req = route.calls.last.request
    assert req.headers["apikey"] == KEY, "service-role key sent as apikey"
    assert req.headers["authorization"] == f"Bearer {KEY}", "and as the bearer token (PostgREST role service_role)"
    assert json.loads(req.content) == {}, "named arguments travel as a JSON object"


def test_postgrest_named_arguments(rest):
    route = rest.post("/rpc/create_organization").mock(return_value=httpx.Response(200, json={"id": "x"}))
    PostgrestDatabase(SUPA, KEY).rpc("create_organization", {"name": "Acme", "slug": "acme"})
    assert json.loads(route.calls.last.request.content) == {"name": "Acme", "slug": "acme"}


@pytest.mark.parametrize("code,status,cls", [
    ("42501", 403, Forbidden),
    ("PT402", 402, PaymentRequired),
    ("PT404", 404, NotFound),
    ("PT409", 409, Conflict),
    ("23505", 409, Conflict),
])
def test_postgrest_errors_map_like_postgres_errors(rest, code, status, cls):
    rest.post("/rpc/fn").mock(return_value=httpx.Response(status, json={
        "code": code, "message": "nope", "details": None, "hint": None}))
    with pytest.raises(cls) as err:
        PostgrestDatabase(SUPA, KEY).rpc("fn", {})
    assert err.value.status == status
    assert err.value.message == "nope"


def test_postgrest_unreachable_is_503(rest):
    rest.post("/rpc/fn").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ServiceUnavailable):
        PostgrestDatabase(SUPA, KEY).rpc("fn", {})


def test_rejects_injected_names():
    db = PostgrestDatabase(SUPA, KEY)
    with pytest.raises(ValueError):
        db.rpc("fn; drop table x", {})


def test_psycopg_and_postgrest_raise_the_same_error_for_the_same_sqlstate(fresh_dsn, rest):
    """The same SQL function failing (PT401: no signed-in user) through both transports."""
    from lib.core.errors import Unauthorized

    db = PsycopgDatabase(fresh_dsn, pool_size=1)
    try:
        with pytest.raises(Unauthorized) as direct:
            db.rpc("create_organization", {"name": "Acme", "slug": "acme-2"})
    finally:
        db.close()
    # what PostgREST answers for the same raise
    rest.post("/rpc/create_organization").mock(return_value=httpx.Response(
        401, json={"code": "PT401", "message": "not signed in", "details": None, "hint": None}))
    with pytest.raises(Unauthorized) as via_rest:
        PostgrestDatabase(SUPA, KEY).rpc("create_organization", {"name": "Acme", "slug": "acme-2"})
    assert (direct.value.status, direct.value.message) == (via_rest.value.status, via_rest.value.message) == (401, "not signed in")


def test_psycopg_rpc_returns_json_with_exact_numbers(fresh_dsn):
    db = PsycopgDatabase(fresh_dsn, pool_size=1)
    try:
        result = db.rpc("health_check", {})
        assert result["ok"] is True
        with db.pool.connection() as conn:
            from psycopg.types.json import Jsonb
            value = conn.execute("select jsonb_build_object('usd', 0.1::numeric + 0.2::numeric)").fetchone()[0]
        assert value["usd"] == Decimal("0.3"), "numeric inside jsonb decodes as Decimal, never float"
    finally:
        db.close()


def test_error_hierarchy_maps_to_http_json():
    import flask

    from lib.core.http import error_response

    with flask.Flask("t").app_context():
        resp = error_response(PaymentRequired("out of credits", headers={"x-should-retry": "false"}))
    assert resp.status_code == 402
    assert json.loads(resp.get_data()) == {"error": {"type": "insufficient_credits", "message": "out of credits"}}
    assert resp.headers["x-should-retry"] == "false"
    assert TollboothError("x").status == 500
