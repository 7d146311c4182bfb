"""Every upstream failure charges what it should and leaves the ledger equal to the balance."""
from __future__ import annotations

import socket
import time

import httpx
import psycopg

from tests.support.chat import Stack, chat_body
from tests.support.secrets import JWT_SECRET, OPENAI_API_KEY
from tests.support.server import running_server


def _setup(stack):
    org, key = stack.keyed_team()
    return org, key, stack.balance(org)


def test_upstream_4xx_is_relayed_and_released(stack):
    org, key, before = _setup(stack)
    stack.upstream.default_headers = {"x-fake-status": "400"}
    r = stack.post(token=key, json=chat_body(max_tokens=4))
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", "relayed as-is"
    assert stack.balance(org) == before, "released in full"
    row = stack.usage(org)[0]
    assert row["status"] == "upstream_error" and row["credits"] == 0
    stack.assert_ledger_consistent(org)


def test_upstream_429_is_relayed(stack):
    org, key, before = _setup(stack)
    stack.upstream.default_headers = {"x-fake-status": "429"}
    r = stack.post(token=key, json=chat_body(max_tokens=4))
    assert r.status_code == 429 and stack.balance(org) == before
    stack.assert_ledger_consistent(org)


def test_upstream_5xx_is_502_and_released(stack):
    org, key, before = _setup(stack)
    stack.upstream.default_headers = {"x-fake-status": "503"}
    r = stack.post(token=key, json=chat_body(max_tokens=4))
    assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
    assert stack.balance(org) == before
    stack.assert_ledger_consistent(org)


def test_upstream_cutting_the_connection_unanswered_is_502_and_released(stack):
    org, key, before = _setup(stack)
    assert stack.post(token=key, json=chat_body(max_tokens=4)).status_code == 200  # a pooled connection now
    stack.upstream.default_headers = {"x-fake-disconnect-after": "0"}  # cut before any answer, retry included
    r = stack.post(token=key, json=chat_body(max_tokens=4))
    assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
    assert [row["status"] for row in stack.usage(org)] == ["succeeded", "upstream_unreachable"]
    stack.upstream.default_headers = {}
    assert stack.post(token=key, json=chat_body(max_tokens=4)).status_code == 200, "the next request is fine"
    assert stack.balance(org) == before - sum(row["credits"] for row in stack.usage(org))
    stack.assert_ledger_consistent(org)


def test_upstream_timeout_is_504_and_released(stack):
    org, key, before = _setup(stack)
    stack.upstream.default_headers = {"x-fake-delay-ms": "3000"}  # proxy timeout is 2 s
    r = stack.post(token=key, json=chat_body(max_tokens=4))
    assert r.status_code == 504 and r.json()["error"]["type"] == "upstream_timeout"
    assert stack.balance(org) == before
    assert stack.usage(org)[0]["status"] == "upstream_timeout"
    stack.assert_ledger_consistent(org)


def test_upstream_unreachable_is_502(fresh_dsn):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        with running_server(DATABASE_URL=fresh_dsn, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
                            OPENAI_API_KEY=OPENAI_API_KEY, SUPABASE_JWT_SECRET=JWT_SECRET) as base:
            stack = Stack(base, sql, upstream=None)
            org, key, before = _setup(stack)
            r = stack.post(token=key, json=chat_body(max_tokens=4))
            assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
            assert stack.balance(org) == before
            stack.assert_ledger_consistent(org)


def test_missing_openai_key_is_503_naming_it(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        with running_server(DATABASE_URL=fresh_dsn, OPENAI_API_KEY=None, SUPABASE_JWT_SECRET=JWT_SECRET) as base:
            stack = Stack(base, sql, upstream=None)
            org, key, before = _setup(stack)
            r = stack.post(token=key, json=chat_body(max_tokens=4))
            assert r.status_code == 503 and "OPENAI_API_KEY" in r.json()["error"]["message"]
            assert stack.balance(org) == before, "the reservation was released"
            stack.assert_ledger_consistent(org)


def test_upstream_stream_cut_without_usage_charges_an_estimate(stack):
    org, key, before = _setup(stack)
    stack.upstream.default_headers = {"x-fake-drop-usage": "1"}
    with httpx.stream("POST", f"{stack.base}/v1/chat/completions", json=chat_body(stream=True, max_tokens=6),
                      headers={"authorization": f"Bearer {key}"}) as r:
        try:
            list(r.iter_lines())
        except httpx.HTTPError:
            pass
    row = stack.wait_for_usage(org)[0]
    assert row["estimated"] is True, "marked estimated"
    assert row["completion_tokens"] >= 6, "one token per content chunk seen"
    assert row["credits"] >= 1 and stack.balance(org) == before - row["credits"]
    stack.assert_ledger_consistent(org)


def test_client_disconnect_keeps_reading_upstream_for_usage(stack):
    org, key, before = _setup(stack)
    stack.upstream.chunk_delay_ms = 30
    with httpx.stream("POST", f"{stack.base}/v1/chat/completions",
                      json=chat_body("a b c d e f g h i j k l m n o p", stream=True, max_tokens=16),
                      headers={"authorization": f"Bearer {key}"}) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(3)]
        assert got  # then hang up mid-stream
    row = stack.wait_for_usage(org)[0]
    assert row["status"] == "client_disconnected"
    assert row["estimated"] is False and row["completion_tokens"] == 16, "usage read from upstream after the client left"
    assert stack.balance(org) == before - row["credits"]
    stack.assert_ledger_consistent(org)


def test_a_crashed_request_is_released_on_the_next_reservation(stack):
    """A reservation never settled (the function died) expires and is released."""
    org, key, before = _setup(stack)
    stack.sql.execute("select public.reserve_credits(org_id := %s, request_id := 'crashed-1', amount := 5, ttl_seconds := 0)", (org,))
    assert stack.balance(org) == before - 5
    r = stack.post(token=key, json=chat_body(max_tokens=2))
    assert r.status_code == 200
    status = stack.sql.execute("select status from credit_reservations where request_id = 'crashed-1'").fetchone()[0]
    assert status == "released", "stale hold released by the next reservation, no cron needed"
    charged = stack.usage(org)[0]["credits"]
    assert stack.balance(org) == before - charged
    stack.assert_ledger_consistent(org)
