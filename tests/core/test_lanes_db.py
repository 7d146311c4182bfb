"""lib.core.lanes with a real database: lib.core.db_async's lanes ride one connection in
pipeline mode (lib.core.db_prepared.Conveyor), each call its own transaction."""
from __future__ import annotations

import asyncio

import pytest


def run(coro):
    return asyncio.run(coro)


WHO = """
create function public.lane_probe(n integer) returns jsonb language sql as $$
  select jsonb_build_object('n', n, 'pid', pg_backend_pid(), 'xid', pg_current_xact_id()::text)
$$;
create function public.lane_timed(n integer, pause double precision) returns jsonb language plpgsql as $$
declare
  began timestamptz := clock_timestamp();
begin
  perform pg_sleep(pause);
  return jsonb_build_object('n', n, 'pid', pg_backend_pid(), 'began', began, 'ended', clock_timestamp());
end $$;
create table public.lane_lock (id integer primary key);
create function public.lane_locked() returns void language plpgsql as $$
begin
  perform set_config('lock_timeout', '50ms', true);
  lock table public.lane_lock in access exclusive mode;
end $$;
"""


async def _create(dsn: str, sql: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql)


def test_calls_queued_in_a_lane_ride_one_connection_each_in_its_own_transaction(fresh_dsn):
    from lib.core.db_async import AsyncPsycopgDatabase

    async def go():
        await _create(fresh_dsn, WHO)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=8)
        try:
            answers = await asyncio.gather(*(db.rpc_pipeline([("lane_probe", {"n": i})], lane="org")
                                             for i in range(6)))
            return [a[0] for a in answers], db.pool._size
        finally:
            await db.close()

    answers, size = run(go())
    assert [a["n"] for a in answers] == list(range(6)), "each caller its own answer"
    assert size == 1, f"the lane's calls rode one connection: {size} connections"
    assert len({a["pid"] for a in answers}) == 1, "one backend ran them all"
    assert len({a["xid"] for a in answers}) == 6, "each call its own transaction"


def test_a_call_sent_while_another_runs_goes_out_at_once_and_starts_when_it_ends(fresh_dsn):
    from lib.core.db_async import AsyncPsycopgDatabase

    async def go():
        await _create(fresh_dsn, WHO)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=8)
        try:
            first = asyncio.create_task(db.rpc_pipeline([("lane_timed", {"n": 1, "pause": "0.3"})], lane="org"))
            await asyncio.sleep(0.1)
            second = asyncio.create_task(db.rpc_pipeline([("lane_timed", {"n": 2, "pause": "0"})], lane="org"))
            await asyncio.sleep(0.05)
            in_flight = db.lanes._lanes["org"].channel.in_flight
            answers = [(await first)[0], (await second)[0]]
            idle = db.lanes._lanes, len(db.pool._idle)
            return in_flight, answers, idle
        finally:
            await db.close()

    in_flight, (first, second), (lanes_left, pooled) = run(go())
    assert in_flight == 2, "the second call was written behind the first while the first ran"
    assert first["pid"] == second["pid"], "on the same backend"
    assert second["began"] >= first["ended"], "which started it once the first had ended"
    assert lanes_left == {} and pooled == 1, "the idle lane gave its connection back to the pool"


def test_a_lane_connection_killed_mid_flight_runs_its_calls_once_more_on_a_new_one(fresh_dsn):
    import psycopg

    from lib.core.db_async import AsyncPsycopgDatabase

    async def go():
        await _create(fresh_dsn, WHO)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=8)
        try:
            calls = [asyncio.create_task(db.rpc_pipeline([("lane_timed", {"n": n, "pause": "0.3" if n == 0 else "0"})],
                                                         lane="org")) for n in range(3)]
            await asyncio.sleep(0.1)
            pid = db.lanes._lanes["org"].channel.conn.pgconn.backend_pid
            async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as admin:
                await admin.execute("select pg_terminate_backend(%s)", [pid])
            answers = [(await call)[0] for call in calls]
            return pid, answers, db.pool._size
        finally:
            await db.close()

    killed, answers, size = run(go())
    assert [a["n"] for a in answers] == [0, 1, 2], "every caller answered, none failed"
    assert all(a["pid"] != killed for a in answers), "by a new backend"
    assert size == 1, "the dead connection's slot was freed"


def test_an_error_in_a_batch_is_only_its_own_caller_s(fresh_dsn):
    from lib.core.db_async import AsyncPsycopgDatabase
    from lib.core.errors import TollboothError

    async def go():
        await _create(fresh_dsn, WHO)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=8)
        try:
            return await asyncio.gather(
                db.rpc_pipeline([("lane_probe", {"n": 0})], lane="org"),
                db.rpc_pipeline([("renew_chat_leases", {"request_ids": {"not": "an array"}})], lane="org"),
                db.rpc_pipeline([("lane_probe", {"n": 2}), ("lane_probe", {"n": 3})], lane="org"),
                return_exceptions=True)
        finally:
            await db.close()

    first, bad, last = run(go())
    assert first[0]["n"] == 0 and [a["n"] for a in last] == [2, 3]
    assert isinstance(bad, TollboothError) and bad.status == 400, bad


def test_a_lock_timeout_in_a_lane_opens_it(fresh_dsn):
    import psycopg

    from lib.core.db_async import AsyncPsycopgDatabase
    from lib.core.errors import TollboothError

    async def go():
        await _create(fresh_dsn, WHO)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=8)
        holder = await psycopg.AsyncConnection.connect(fresh_dsn)
        try:
            await holder.execute("lock table public.lane_lock in access exclusive mode")
            outcomes = await asyncio.gather(*(db.rpc_pipeline([("lane_locked", {})], lane="org") for _ in range(3)),
                                            return_exceptions=True)
            return outcomes, db.lanes._is_open("org"), db.lanes._is_open("other")
        finally:
            await holder.rollback()
            await holder.close()
            await db.close()

    outcomes, opened, other = run(go())
    assert all(isinstance(o, TollboothError) and o.status == 503 for o in outcomes), outcomes
    assert opened and not other, "the stalled organization's lane is open; no one else's"


def test_a_call_with_a_bad_name_fails_alone_and_the_calls_in_flight_go_on(fresh_dsn):
    from lib.core.db_async import AsyncPsycopgDatabase

    async def go():
        await _create(fresh_dsn, WHO)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=8)
        try:
            running = asyncio.create_task(db.rpc_pipeline([("lane_timed", {"n": 1, "pause": "0.2"})], lane="org"))
            await asyncio.sleep(0.05)
            channel = db.lanes._lanes["org"].channel
            with pytest.raises(ValueError):
                await db.rpc_pipeline([("lane_probe; drop table x", {"n": 2})], lane="org")
            return (await running)[0], channel.broken, channel.conn.closed
        finally:
            await db.close()

    answer, broken, closed = run(go())
    assert answer["n"] == 1, "the call in flight was answered"
    assert not broken and not closed, "its connection was not given up for another call's bad name"
