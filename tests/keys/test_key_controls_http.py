"""Per-key controls through the real proxy (issue 12): the error types and headers an
OpenAI client sees, the key budget under 100 concurrent calls, rpm across two server
processes, the IP allow-list with X-Forwarded-For only from a trusted proxy, rotation,
and `GET /v1/models` listing only the key's models."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support.chat import chat_body
from tests.support.clock import early_in_a_minute
from tests.support.pg import as_user
from tests.support.secrets import JWT_SECRET, OPENAI_API_KEY


def post(base: str, key: str, body: dict | None = None, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", json=body or chat_body(max_tokens=4), timeout=60,
                      headers={"authorization": f"Bearer {key}", **(headers or {})})


def test_a_disallowed_model_is_403_model_not_allowed_and_models_lists_only_the_allowed(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    stack.set_balance(org, 1000)
    key = stack.key(owner, org, models=["gpt-4.1-nano"])["key"]
    r = post(stack.base, key, chat_body(max_tokens=4))
    assert r.status_code == 403 and r.json()["error"]["type"] == "model_not_allowed"
    assert post(stack.base, key, chat_body(max_tokens=4, model="gpt-4.1-nano")).status_code == 200
    listed = httpx.get(f"{stack.base}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=30).json()
    assert [m["id"] for m in listed["data"]] == ["gpt-4.1-nano"]
    assert stack.balance(org) < 1000
    stack.assert_ledger_consistent(org)


def test_100_parallel_calls_against_a_key_budget_of_10_calls(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    stack.set_balance(org, 1000)  # the org could pay for all of them; the key's budget cannot
    k = stack.key(owner, org, credit_limit=10, credit_limit_period="30d")  # each call holds (and costs) 1 credit
    stack.upstream.latency_ms = 50

    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(lambda i: post(stack.base, k["key"], chat_body(f"request {i}", max_tokens=4)),
                                range(100)))
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 10 and statuses.count(402) == 90, sorted(set(statuses))
    refusal = next(r for r in answers if r.status_code == 402)
    assert "API key budget" in refusal.json()["error"]["message"]
    assert refusal.json()["error"]["type"] == "key_budget_exceeded" and refusal.headers["x-should-retry"] == "false"
    assert stack.balance(org) == 990
    row = stack.sql.execute("select budget_spent, budget_reserved from api_keys where id = %s", (k["id"],)).fetchone()
    assert row == (10, 0)
    stack.assert_ledger_consistent(org)


def test_rpm_refusal_carries_openai_rate_limit_headers(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    stack.set_balance(org, 1000)
    key = stack.key(owner, org, rpm=2, tpm=100000)["key"]
    early_in_a_minute()  # all three calls in one rate window
    first, second = post(stack.base, key), post(stack.base, key)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.headers["x-ratelimit-limit-requests"] == "2" and first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0" and "x-ratelimit-remaining-tokens" in second.headers
    r = post(stack.base, key)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_exceeded"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-limit-requests"] == "2" and r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.headers["x-ratelimit-limit-tokens"] == "100000" and r.headers["x-ratelimit-reset-requests"].endswith("s")
    stack.assert_ledger_consistent(org)


def _serve(dsn: str, upstream_url: str, outbox: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("SUPABASE_URL",)}
    env.update(DATABASE_URL=dsn, SUPABASE_JWT_SECRET=JWT_SECRET, LOG_LEVEL="WARNING", OPENAI_BASE_URL=upstream_url,
               OPENAI_API_KEY=OPENAI_API_KEY, METERING_OUTBOX_DIR=str(outbox))
    proc = subprocess.Popen([sys.executable, "-m", "lib.cli", "serve", "--port", str(port), "--workers", "1",
                             "--threads", "8"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parents[2])
    return proc, f"http://127.0.0.1:{port}"


def test_rpm_is_exact_across_two_server_processes(fresh_dsn, upstream, tmp_path):
    import psycopg

    from tests.support.chat import Stack

    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        s = Stack("", sql, upstream)
        owner = s.user("owner")
        org = s.team(owner)
        s.set_balance(org, 10000)
        key = s.key(owner, org, rpm=7)["key"]
        servers = [_serve(fresh_dsn, upstream.base_url, tmp_path / f"outbox{i}") for i in range(2)]
        try:
            for _, base in servers:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        httpx.get(f"{base}/api/health", timeout=2)
                        break
                    except httpx.HTTPError:
                        assert time.monotonic() < deadline, "serve did not come up"
                        time.sleep(0.2)
            early_in_a_minute(40)  # all 30 calls in one rate window
            with ThreadPoolExecutor(max_workers=10) as pool:
                statuses = list(pool.map(lambda i: post(servers[i % 2][1], key).status_code, range(30)))
        finally:
            for proc, _ in servers:
                proc.terminate()
                proc.wait(15)
        assert statuses.count(200) == 7 and statuses.count(429) == 23, statuses
        s.assert_ledger_consistent(org)


def _ip_checks(st, forwarded_ok: bool) -> None:
    owner = st.user("owner")
    org = st.team(owner)
    st.set_balance(org, 1000)
    key = st.key(owner, org, allowed_ips=["203.0.113.0/24"])["key"]
    plain = post(st.base, key)
    assert plain.status_code == 403 and plain.json()["error"]["type"] == "ip_not_allowed", "127.0.0.1 is outside"
    via = post(st.base, key, headers={"x-forwarded-for": "198.51.100.9, 203.0.113.7"})
    assert via.status_code == (200 if forwarded_ok else 403)
    spoofed = post(st.base, key, headers={"x-forwarded-for": "203.0.113.7, 198.51.100.9"})
    assert spoofed.status_code == 403, "only the hop the trusted proxy added counts"
    st.assert_ledger_consistent(org)


def test_ip_allow_list_ignores_x_forwarded_for_from_an_untrusted_peer(stack):
    _ip_checks(stack, forwarded_ok=False)


def test_ip_allow_list_believes_x_forwarded_for_from_a_trusted_proxy(trusted_stack):
    _ip_checks(trusted_stack, forwarded_ok=True)


def test_a_malformed_trusted_proxy_setting_is_a_503_naming_it_and_reserves_nothing(misconfigured_stack):
    stack = misconfigured_stack
    owner = stack.user("owner")
    org = stack.team(owner)
    stack.set_balance(org, 1000)
    r = post(stack.base, stack.key(owner, org)["key"])
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_setting" and "TRUSTED_PROXY_CIDRS" in error["message"], error
    assert stack.balance(org) == 1000 and stack.upstream.requests == [], "nothing reserved, nothing forwarded"
    stack.assert_ledger_consistent(org)


def test_rotation_over_http(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    stack.set_balance(org, 1000)
    k = stack.key(owner, org)
    new = as_user(stack.sql, owner).one("select public.rotate_api_key(%s, 3600) as k", (k["id"],))["k"]
    assert post(stack.base, k["key"]).status_code == 200 and post(stack.base, new["key"]).status_code == 200
    stack.sql.execute("update api_keys set previous_key_expires_at = now() where id = %s", (k["id"],))
    old = post(stack.base, k["key"])
    assert old.status_code == 401 and old.json()["error"]["type"] == "invalid_api_key"
    assert post(stack.base, new["key"]).status_code == 200


def test_an_expired_trial_key_is_401_trial_expired_and_the_trial_ends(stack):
    alice = stack.user("alice")
    t = as_user(stack.sql, alice).one("select public.start_trial('Trial', 'alice-http', 'standard') as t")["t"]
    key = stack.key(alice, t["org_id"])["key"]
    assert post(stack.base, key).status_code == 200
    stack.sql.execute("update trials set expires_at = now() - interval '1 second' where id = %s", (t["id"],))
    r = post(stack.base, key)
    assert r.status_code == 401 and r.json()["error"]["type"] == "trial_expired"
    models = httpx.get(f"{stack.base}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert models.status_code == 401 and models.json()["error"]["type"] == "trial_expired"
    row = stack.sql.execute("select status from trials where id = %s", (t["id"],)).fetchone()
    assert row == ("expired",), "the refusal ended the trial (expire_trials)"
    assert stack.balance(t["org_id"]) == 0
    stack.assert_ledger_consistent(t["org_id"])
