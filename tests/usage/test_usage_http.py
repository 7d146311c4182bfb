"""GET /api/usage (JSON and CSV), GET /api/usage/requests (cursor pages, filters) and
GET /v1/usage (an API key reads only its own usage), over real HTTP."""
from __future__ import annotations

import csv
import datetime as dt
import io

import httpx
import psycopg
import pytest

from tests.support.metering import create_key
from tests.support.personas import make_user
from tests.support.secrets import JWT_SECRET, bearer
from tests.support.server import running_server
from tests.support.usage import add_event, rollup


@pytest.fixture
def site(committed):
    with psycopg.connect(committed.dsn, autocommit=True) as sql:
        with running_server(DATABASE_URL=committed.dsn, SUPABASE_URL=None, SUPABASE_JWT_SECRET=JWT_SECRET) as base:
            yield base, sql


def get(base, path, who=None, headers=None, **params):
    h = dict(headers or {})
    if who is not None:
        h.update(bearer(who))
    return httpx.get(f"{base}{path}", params=params, headers=h, timeout=10)


def test_usage_json_and_csv(site, committed):
    base, sql = site
    add_event(sql, committed.org, credits=6, model="gpt-4o")
    rollup(sql)
    add_event(sql, committed.org, credits=4)
    r = get(base, "/api/usage", committed.owner, org_id=committed.org, days=7, tz="Europe/Berlin")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"]["credits"] == 10 and len(body["buckets"]) == 7 and body["tz"] == "Europe/Berlin"
    r = get(base, "/api/usage", committed.owner, org_id=committed.org, days=3, format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["bucket", "requests", "ok_requests", "failed_requests", "prompt_tokens", "cached_tokens",
                       "completion_tokens", "reasoning_tokens", "total_tokens", "credits", "cost_usd"]
    assert len(rows) == 1 + 3
    assert sum(int(row[9]) for row in rows[1:]) == 10


def test_usage_refuses_strangers_and_bad_input(site, committed):
    base, sql = site
    assert get(base, "/api/usage", org_id=committed.org).status_code == 401
    stranger = make_user(sql, "stranger")
    r = get(base, "/api/usage", stranger, org_id=committed.org)
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert get(base, "/api/usage", committed.owner, org_id=committed.org, tz="Nowhere/Land").status_code == 400
    assert get(base, "/api/usage", committed.owner, org_id=committed.org, format="xml").status_code == 400
    assert get(base, "/api/usage", committed.owner, org_id="not-a-uuid").status_code == 400
    assert get(base, "/api/usage", committed.owner, org_id=committed.org, bogus="1").status_code == 400
    assert httpx.post(f"{base}/api/usage", headers=bearer(committed.owner), timeout=10).status_code == 405


def test_requests_pages_newest_first_with_filters(site, committed):
    base, sql = site
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=30)
    rids = [add_event(sql, committed.org, at=start + dt.timedelta(minutes=i), model="gpt-4o" if i % 2 else "gpt-4o-mini",
                      status="upstream_error" if i == 3 else "succeeded") for i in range(7)]
    add_event(sql, committed.other, credits=1)
    seen, cursor = [], None
    while True:
        params = {"org_id": committed.org, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = get(base, "/api/usage/requests", committed.owner, **params).json()
        seen += [r["request_id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == list(reversed(rids)), "every request once, newest first, across pages"
    only = get(base, "/api/usage/requests", committed.owner, org_id=committed.org, model="gpt-4o").json()["data"]
    assert [r["request_id"] for r in only] == [rids[5], rids[3], rids[1]]
    errors = get(base, "/api/usage/requests", committed.owner, org_id=committed.org, status="error").json()["data"]
    assert [r["request_id"] for r in errors] == [rids[3]]
    day = get(base, "/api/usage/requests", committed.owner, org_id=committed.org, date=start.date().isoformat())
    assert {r["request_id"] for r in day.json()["data"]} == {
        rid for i, rid in enumerate(rids) if (start + dt.timedelta(minutes=i)).date() == start.date()}
    assert get(base, "/api/usage/requests", committed.owner, org_id=committed.org, cursor="garbage").status_code == 400
    assert get(base, "/api/usage/requests", committed.owner, org_id=committed.org, status="meh").status_code == 400
    assert get(base, "/api/usage/requests", committed.owner, org_id=committed.other).status_code == 403


def test_requests_filter_by_key(site, committed):
    base, sql = site
    key = create_key(sql, committed.owner, committed.org, name="filter key")
    mine = add_event(sql, committed.org, api_key_id=key["id"])
    add_event(sql, committed.org)
    data = get(base, "/api/usage/requests", committed.owner, org_id=committed.org, key=key["id"]).json()["data"]
    assert [r["request_id"] for r in data] == [mine] and data[0]["api_key_name"] == "filter key"


def test_an_api_key_reads_only_its_own_usage(site, committed):
    base, sql = site
    a = create_key(sql, committed.owner, committed.org, name="key a")
    b = create_key(sql, committed.owner, committed.org, name="key b")
    add_event(sql, committed.org, api_key_id=a["id"], credits=11)
    rollup(sql)
    add_event(sql, committed.org, api_key_id=a["id"], credits=1)
    add_event(sql, committed.org, api_key_id=b["id"], credits=500)
    add_event(sql, committed.org, credits=900)
    r = get(base, "/v1/usage", headers={"Authorization": f"Bearer {a['key']}"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["id"] == a["id"] and data["name"] == "key a"
    assert data["usage"]["credits"] == 12 and data["usage_daily"]["credits"] == 12
    assert data["usage_monthly"]["requests"] == 2
    balance = sql.execute("select balance from public.credit_accounts where org_id = %s", (committed.org,)).fetchone()
    assert data["limit_remaining"] == balance[0]
    assert get(base, "/v1/usage", headers={"Authorization": f"Bearer {b['key']}"}).json()["data"]["usage"]["credits"] == 500


def test_v1_usage_refuses_bad_keys_and_user_tokens(site, committed):
    base, sql = site
    k = create_key(sql, committed.owner, committed.org, name="soon revoked")
    assert get(base, "/v1/usage").status_code == 401
    r = get(base, "/v1/usage", headers={"Authorization": "Bearer xan_" + "0" * 64})
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_api_key"
    assert get(base, "/v1/usage", committed.owner).status_code == 401, "a user token is not a key"
    sql.execute("update public.api_keys set status = 'revoked' where id = %s", (k["id"],))
    assert get(base, "/v1/usage", headers={"Authorization": f"Bearer {k['key']}"}).status_code == 401
