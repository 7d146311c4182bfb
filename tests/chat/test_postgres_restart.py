"""A real Postgres restarted under the proxy (issue 8), on a server of this test's own
(the suite's shared one cannot be restarted under the other tests): restarted cleanly
(`pg_ctl restart -m fast`) or crashed (`-m immediate`) while streams are in flight,
every stream that reached `[DONE]` is charged exactly once and no hold stays open; and
the pool a restart left stale answers the next calls without a 500."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from lib.local import embedded, migrate
from tests.support.chat import Stack, chat_body
from tests.support.faults import assert_charged_once, wait_until
from tests.support.secrets import JWT_SECRET, OPENAI_API_KEY
from tests.support.server import running_server

STREAMS = 8


@pytest.fixture
def own_postgres(tmp_path) -> Iterator[tuple[Path, str]]:
    """A migrated, seeded embedded Postgres this test may restart: (data dir, DSN)."""
    data_dir = tmp_path / "pg"
    try:
        dsn = embedded.start(data_dir)
        migrate.apply_all(dsn)
        yield data_dir, dsn
    finally:
        embedded.stop(data_dir)


@pytest.fixture
def served(own_postgres, upstream, tmp_path) -> Iterator[tuple[Path, str, str]]:
    """The real server on that Postgres: (data dir, DSN, base URL)."""
    data_dir, dsn = own_postgres
    with running_server(DATABASE_URL=dsn, SUPABASE_URL=None, OPENAI_BASE_URL=upstream.base_url,
                        OPENAI_API_KEY=OPENAI_API_KEY, SUPABASE_JWT_SECRET=JWT_SECRET,
                        SETTLE_INLINE_SECONDS="2", METERING_OUTBOX_DIR=str(tmp_path / "outbox")) as base:
        yield data_dir, dsn, base


def _keyed_team(dsn: str, base: str, upstream) -> tuple[object, str]:
    with psycopg.connect(dsn, autocommit=True) as sql:
        org, key = Stack(base, sql, upstream).keyed_team(credits=1_000_000)
    return org, key


def _open_holds(dsn: str, org) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute("select count(*) from public.credit_reservations where org_id = %s and status = 'open'",
                        (org,)).fetchone()
    return row[0] if row else 0


def _stream(base: str, key: str, i: int, out: list[tuple[int, str, bool]]) -> None:
    with httpx.stream("POST", f"{base}/v1/chat/completions", timeout=60, headers={"authorization": f"Bearer {key}"},
                      json=chat_body(f"stream {i} " + "word " * 12, max_tokens=20, stream=True,
                                     stream_options={"include_usage": True})) as r:
        text = r.read().decode()
        out.append((r.status_code, r.headers.get("x-request-id", ""), "data: [DONE]" in text))


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_mid_stream_charges_every_completed_stream_once(served, upstream, mode):
    data_dir, dsn, base = served
    org, key = _keyed_team(dsn, base, upstream)
    upstream.chunk_delay_ms = 100  # about 2 s a stream: the restart lands in the middle
    results: list[tuple[int, str, bool]] = []
    threads = [threading.Thread(target=_stream, args=(base, key, i, results)) for i in range(STREAMS)]
    for t in threads:
        t.start()
    wait_until(lambda: _open_holds(dsn, org) == STREAMS, what="every stream's hold")
    embedded.restart(data_dir, mode)
    for t in threads:
        t.join(60)
    assert len(results) == STREAMS and all(status == 200 and done for status, _, done in results), results
    rids = [rid for _, rid, _ in results]
    with psycopg.connect(dsn, autocommit=True) as sql:
        wait_until(lambda: sql.execute("select count(*) from public.usage_events where request_id = any(%s)",
                                       (rids,)).fetchone() == (STREAMS,), timeout=60, what="every stream's settlement")
        usage = assert_charged_once(sql, org, rids)
        assert all(u["credits"] > 0 and u["status"] == "succeeded" for u in usage), usage
    assert _open_holds(dsn, org) == 0


def test_the_pool_a_restart_left_stale_answers_without_a_500(served, upstream):
    data_dir, dsn, base = served
    org, key = _keyed_team(dsn, base, upstream)
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {key}"}) as client:
        def call(i: int) -> int:
            return client.post(f"{base}/v1/chat/completions", json=chat_body(f"call {i}", max_tokens=4)).status_code

        assert [call(i) for i in range(4)] == [200] * 4  # the pool and the lane hold live connections
        embedded.restart(data_dir, "fast")  # every one of them is dead now
        statuses = [call(i) for i in range(30)]
    assert statuses == [200] * 30, "each dead connection is met, dropped and the call retried on a checked one"
    with psycopg.connect(dsn, autocommit=True) as sql:
        wait_until(lambda: _open_holds(dsn, org) == 0, what="the last settlement")
        assert len(assert_charged_once(sql, org, [])) == 34
