"""A charge is never lost (issue 8): settlement is retried, kept in a durable outbox
when the database stays away, replayed by the server's drainer or `tollbooth chat
drain-outbox`, and charged exactly once; a locked account row or dead pooled
connections give 503 (never 500) and never stall other organizations."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from lib.core.db import PsycopgDatabase, set_database
from tests.support.chat import Stack, chat_body
from tests.support.credits import assert_consistent
from tests.support.faults import FlakyDatabase, assert_charged_once, wait_until
from tests.support.secrets import JWT_SECRET, OPENAI_API_KEY
from tests.support.server import env, running_server


@contextmanager
def faulty_stack(fresh_dsn, upstream, outbox: Path, **settings):
    """The chat stack with the process-wide database wrapped in a FlakyDatabase."""
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        with running_server(DATABASE_URL=fresh_dsn, SUPABASE_URL=None, OPENAI_BASE_URL=upstream.base_url,
                            OPENAI_API_KEY=OPENAI_API_KEY, SUPABASE_JWT_SECRET=JWT_SECRET,
                            UPSTREAM_TIMEOUT_SECONDS="5", METERING_OUTBOX_DIR=str(outbox),
                            **{"SETTLE_INLINE_SECONDS": "0.3", **settings}) as base:
            flaky = FlakyDatabase(PsycopgDatabase(fresh_dsn))
            set_database(flaky)
            yield Stack(base, sql, upstream), flaky


def _team(stack, credits=100_000):
    return stack.keyed_team(credits)


def _call(stack, key, stream: bool, i: int) -> tuple[int, str, str]:
    body = chat_body(f"call {i} with several words to echo back", max_tokens=8, stream=stream)
    r = stack.post(token=key, json=body, settled=False)  # the faults here keep settlements away
    return r.status_code, r.headers.get("x-request-id", ""), r.text


def test_a_settlement_blip_is_retried_in_the_request(fresh_dsn, upstream, tmp_path):
    with faulty_stack(fresh_dsn, upstream, tmp_path / "outbox", SETTLE_INLINE_SECONDS="5") as (stack, flaky):
        org, key = _team(stack)
        flaky.fail("finish_chat_request", 3)
        status, rid, _ = _call(stack, key, False, 0)
        assert status == 200 and flaky.failed["finish_chat_request"] == 3
        assert_charged_once(stack.sql, org, [rid])
        assert not list((tmp_path / "outbox").glob("*.json")), "nothing needed the outbox"


def test_settlement_outlasting_the_retries_goes_to_the_outbox_and_lands_once(fresh_dsn, upstream, tmp_path):
    """The database is away for every settlement for 3 s (JSON and streamed calls):
    each answer still reaches its client, each call is kept in the outbox, and the
    drainer settles each exactly once when the database is back."""
    outbox = tmp_path / "outbox"
    with faulty_stack(fresh_dsn, upstream, outbox) as (stack, flaky):
        org, key = _team(stack)
        flaky.down_for("finish_chat_request", 3.0)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: _call(stack, key, i % 2 == 1, i), range(8)))
        assert [s for s, _, _ in results] == [200] * 8, results
        assert all("[DONE]" in text for s, _, text in results[1::2]), "streams completed"
        assert len(list(outbox.glob("*.json"))) >= 1, "kept in the outbox while the database was away"
        rids = [rid for _, rid, _ in results]
        wait_until(lambda: len(stack.usage(org)) == 8, timeout=30, what="the drainer to settle every call")
        wait_until(lambda: not list(outbox.glob("*.json")), timeout=10, what="the outbox to empty")
        usage = assert_charged_once(stack.sql, org, rids)
        assert all(u["credits"] > 0 and u["status"] == "succeeded" for u in usage)
        assert stack.balance(org) == 100_000 - sum(u["credits"] for u in usage)


def test_the_outbox_survives_the_process_and_the_cli_drains_it(fresh_dsn, upstream, tmp_path):
    from lib.cli import main

    outbox = tmp_path / "outbox"
    with faulty_stack(fresh_dsn, upstream, outbox) as (stack, flaky):
        org, key = _team(stack)
        flaky.down_for("finish_chat_request", 3600)  # never back while this server lives
        results = [_call(stack, key, i == 1, i) for i in range(2)]
        assert [s for s, _, _ in results] == [200, 200]
        files = sorted(outbox.glob("*.json"))
        assert len(files) == 2 and json.loads(files[0].read_text())["fn"] == "finish_chat_request"
        assert stack.usage(org) == [], "nothing settled yet"
        set_database(None)  # "the process dies": its drainer's database is gone
        with env(DATABASE_URL=fresh_dsn, METERING_OUTBOX_DIR=str(outbox)):
            set_database(None)
            assert main(["chat", "drain-outbox"]) == 0
            assert main(["chat", "drain-outbox"]) == 0, "draining again finds nothing and charges nothing"
            set_database(None)
        assert_charged_once(stack.sql, org, [rid for _, rid, _ in results])
        assert not list(outbox.glob("*.json"))


def test_a_locked_account_at_settlement_is_charged_once_and_stalls_no_other_org(fresh_dsn, upstream, tmp_path):
    """A long admin transaction holds org A's account row for 4 s while A's calls end:
    their settlements time out on the lock (2 s), go to the outbox and land once the lock
    is gone; org B's calls meanwhile are served."""
    outbox = tmp_path / "outbox"
    with faulty_stack(fresh_dsn, upstream, outbox) as (stack, _flaky):
        org_a, key_a = _team(stack)
        owner_b = stack.user("owner-b")
        org_b = stack.team(owner_b)
        key_b = stack.key(owner_b, org_b)["key"]
        upstream.chunk_delay_ms = 300  # A's streams are in flight when the lock is taken
        with ThreadPoolExecutor(6) as pool:
            a_calls = [pool.submit(_call, stack, key_a, True, i) for i in range(4)]
            wait_until(lambda: stack.sql.execute("select count(*) from credit_reservations where org_id = %s "
                                                 "and status = 'open'", (org_a,)).fetchone()[0] == 4,
                       what="A's four reservations")
            with psycopg.connect(fresh_dsn) as holder:
                holder.execute("select 1 from public.credit_accounts where org_id = %s for update", (org_a,))
                b_calls = [pool.submit(_call, stack, key_b, False, i) for i in range(3)]
                b_results = [f.result() for f in b_calls]
                a_results = [f.result() for f in a_calls]
                holder.rollback()
        assert [s for s, _, _ in b_results] == [200] * 3, f"org B is served while A is locked: {b_results}"
        assert [s for s, _, _ in a_results] == [200] * 4 and all("[DONE]" in t for _, _, t in a_results)
        wait_until(lambda: len(stack.usage(org_a)) == 4, timeout=30, what="A's settlements after the lock")
        assert_charged_once(stack.sql, org_a, [rid for _, rid, _ in a_results])
        assert_charged_once(stack.sql, org_b, [rid for _, rid, _ in b_results])


def test_a_locked_account_at_reservation_is_503_with_retry_after(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    key = stack.key(owner, org)["key"]
    before = stack.balance(org)
    with psycopg.connect(stack.sql.info.dsn) as holder:
        holder.execute("select 1 from public.credit_accounts where org_id = %s for update", (org,))
        r = stack.post(token=key, json=chat_body(max_tokens=4))
        holder.rollback()
    assert r.status_code == 503 and r.headers.get("retry-after"), r.text
    assert r.json()["error"]["type"] == "service_unavailable"
    assert stack.balance(org) == before and stack.usage(org) == []
    assert_consistent(stack.sql, org)


def test_dead_pooled_connections_are_never_a_500(stack):
    """Every backend of the server's pool is terminated (as a Postgres restart does):
    the next requests are served on fresh connections."""
    owner = stack.user("owner")
    org = stack.team(owner)
    key = stack.key(owner, org)["key"]
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda i: _call(stack, key, False, i)[0], range(8))) == {200}
    killed = stack.sql.execute("select count(pg_terminate_backend(pid)) from pg_stat_activity "
                               "where datname = current_database() and pid <> pg_backend_pid() "
                               "and backend_type = 'client backend'").fetchone()[0]
    assert killed >= 1
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: _call(stack, key, i % 2 == 0, i)[0], range(30)))
    assert 500 not in statuses and set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) == 30, f"a dead connection is replaced, not answered: {statuses}"
    wait_until(lambda: len(stack.usage(org)) == 38, what="every call settled")
    assert_consistent(stack.sql, org)


def test_sqlstates_of_a_database_going_away_map_to_503():
    from lib.core.errors import ServiceUnavailable, from_sqlstate

    for code in ("08006", "08003", "57P01", "57P02", "57P03", "55P03", "57014", "53300", "40P01"):
        err = from_sqlstate(code, "terminating connection due to administrator command")
        assert isinstance(err, ServiceUnavailable) and err.status == 503, code
        assert err.headers["retry-after"] == "1" and "administrator" not in err.message, code


def test_a_concurrent_lock_of_the_same_org_does_not_block_lease_renewal(stack):
    """Lease renewal skips rows being closed and takes no account lock."""
    owner = stack.user("owner")
    org = stack.team(owner)
    stack.sql.execute("select public.reserve_credits(org_id := %s, request_id := 'lease-1', amount := 5, "
                      "ttl_seconds := 60)", (org,))
    done = threading.Event()
    with psycopg.connect(stack.sql.info.dsn) as holder:
        holder.execute("select 1 from public.credit_accounts where org_id = %s for update", (org,))

        def renew():
            stack_conn = psycopg.connect(stack.sql.info.dsn, autocommit=True)
            stack_conn.execute("select public.renew_chat_leases('[\"lease-1\"]'::jsonb, 600)")
            stack_conn.close()
            done.set()

        t = threading.Thread(target=renew, daemon=True)
        t.start()
        assert done.wait(10), "renewal does not wait for the account lock"
        holder.rollback()
    left = stack.sql.execute("select expires_at - now() from credit_reservations where request_id = 'lease-1'").fetchone()[0]
    assert left.total_seconds() > 500
