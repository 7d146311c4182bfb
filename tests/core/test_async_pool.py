"""lib.core.db_async's own connection pool: bounded, reused most-recent-first, waiters
served in turn or refused with 503 in time, broken connections never handed out again,
and a database that is away answered 503 (never a hang, never a 500)."""
from __future__ import annotations

import asyncio
import socket

import pytest

from lib.core.db_async import AsyncPsycopgDatabase, ConnectionPool, _run_pipeline
from lib.core.errors import ServiceUnavailable, TollboothError


def run(coro):
    return asyncio.run(coro)


def test_sequential_calls_share_one_connection(fresh_dsn):
    async def go():
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=4)
        try:
            pids = set()
            for _ in range(20):
                assert (await db.rpc("health_check", {}))["ok"] is True
                pids.add(await _backend_pid(db))
            return pids, db.pool._size
        finally:
            await db.close()

    pids, size = run(go())
    assert len(pids) == 1 and size == 1, "one warm connection serves calls that never overlap"


async def _backend_pid(db: AsyncPsycopgDatabase) -> int:
    conn = await db.pool.get()
    try:
        cur = await conn.execute("select pg_backend_pid()")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])
    finally:
        db.pool.put(conn)


def test_the_pool_never_exceeds_its_size_and_serves_waiters_in_turn(fresh_dsn):
    async def go():
        pool = ConnectionPool(fresh_dsn, max_size=2, timeout=5, statement_timeout_ms=0)
        a, b = await pool.get(), await pool.get()
        third = asyncio.ensure_future(pool.get())
        await asyncio.sleep(0.05)
        assert not third.done(), "a third caller waits while both connections are out"
        pool.put(a)
        c = await asyncio.wait_for(third, 2)
        assert c is a and pool._size == 2, "the returned connection went straight to the waiter"
        pool.put(b)
        pool.put(c)
        await pool.close()

    run(go())


def test_a_waiter_that_times_out_is_refused_with_503(fresh_dsn):
    async def go():
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1, connect_timeout=0.2)
        held = await db.pool.get()
        try:
            with pytest.raises(ServiceUnavailable):
                await db.rpc("health_check", {})
        finally:
            db.pool.put(held)
        assert (await db.rpc("health_check", {}))["ok"] is True, "and the pool works again once it is back"
        assert not db.pool._waiters, "no waiter is left behind"
        await db.close()

    run(go())


def test_a_broken_connection_frees_its_slot_for_a_waiter(fresh_dsn):
    async def go():
        pool = ConnectionPool(fresh_dsn, max_size=1, timeout=5, statement_timeout_ms=0)
        conn = await pool.get()
        waiting = asyncio.ensure_future(pool.get())
        await asyncio.sleep(0.05)
        await conn.close()
        pool.put(conn)  # dead: closed, never pooled, its slot goes to the waiter
        fresh = await asyncio.wait_for(waiting, 5)
        assert fresh is not conn and not fresh.closed and pool._size == 1
        pool.put(fresh)
        await pool.close()

    run(go())


def test_a_connection_left_mid_transaction_is_not_pooled(fresh_dsn):
    async def go():
        pool = ConnectionPool(fresh_dsn, max_size=2, timeout=5, statement_timeout_ms=0)
        conn = await pool.get()
        await conn.execute("begin")
        pool.put(conn)
        assert pool._idle == [] and pool._size == 0, "a connection in a transaction is closed, not reused"
        await pool.close()

    run(go())


def test_a_database_that_is_away_is_503_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once the socket closes

    async def go():
        db = AsyncPsycopgDatabase(f"postgresql://postgres@127.0.0.1:{port}/x", pool_size=2, connect_timeout=2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ServiceUnavailable):
            await db.rpc("health_check", {})
        assert loop.time() - started < 2, "connection refused is answered at once"
        assert db.pool._size == 0, "the failed connect gave its slot back"
        await db.close()

    run(go())


def test_statement_timeout_applies_to_pooled_connections(fresh_dsn):
    async def go():
        pool = ConnectionPool(fresh_dsn, max_size=1, timeout=5, statement_timeout_ms=1234)
        conn = await pool.get()
        cur = await conn.execute("show statement_timeout")
        row = await cur.fetchone()
        pool.put(conn)
        await pool.close()
        return row[0] if row else None

    assert run(go()) == "1234ms"


def test_a_pipeline_runs_each_call_in_its_own_transaction_in_one_round_trip(fresh_dsn):
    async def go():
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=2)
        try:
            health = await db.rpc_pipeline([("health_check", {}), ("health_check", {}), ("health_check", {})])
            conn = await db.pool.get()
            try:
                xids = await _run_pipeline(conn, [("select pg_current_xact_id()::text", {})] * 2)
            finally:
                db.pool.put(conn)
            return health, xids, db.pool._size
        finally:
            await db.close()

    health, xids, size = run(go())
    assert [h["ok"] for h in health] == [True, True, True], "answers in order"
    assert xids[0] != xids[1], "a Sync after each call: two transactions"
    assert size == 1, "one connection carried the whole pipeline"


def test_a_failing_call_in_a_pipeline_raises_its_mapped_error_and_leaves_the_connection_usable(fresh_dsn):
    async def go():
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1)
        try:
            with pytest.raises(TollboothError) as caught:
                await db.rpc_pipeline([("renew_chat_leases", {"request_ids": {"not": "an array"}}),
                                       ("health_check", {})])
            after = await db.rpc("health_check", {})
            return caught.value, after
        finally:
            await db.close()

    err, after = run(go())
    assert err.status == 400, f"the SQLSTATE maps as for one call: {err}"
    assert after["ok"] is True, "the pooled connection is idle and reused"
