"""lib.core.db_prepared: the async pool's calls as prepared statements on libpq. A caller
cannot tell it from psycopg's cursor: the same values back for every type the proxy
sends, the same errors, and a connection left mid-exchange is never reused."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import psycopg
import pytest

from lib.core import db_prepared
from lib.core.db_async import AsyncPsycopgDatabase, _run_one, rpc_sql
from lib.core.errors import BadRequest, TollboothError

ECHO = """
create function public.echo_args(t text, n bigint, b boolean, u uuid, h bytea, j jsonb, d numeric, i integer)
returns jsonb language sql as $$
  select jsonb_build_object('t', t, 'n', n, 'b', b, 'u', u, 'h', encode(h, 'hex'), 'j', j, 'd', d::text, 'i', i)
$$;
create function public.echo_bigint(n bigint) returns bigint language sql as $$ select n $$;
create function public.echo_uuid(u uuid) returns uuid language sql as $$ select u $$;
create function public.echo_at(at timestamptz, x double precision) returns text language sql as $$
  select to_char(at at time zone 'UTC', 'YYYY-MM-DD HH24:MI') || ' ' || x::text
$$;
create function public.nothing() returns void language sql as $$ select $$;
create function public.slow() returns void language sql as $$ select pg_sleep(2) $$;
"""

ARGS = {"t": "quote ' backslash \\ é 𝄞 \"", "n": -(2 ** 63), "b": False, "u": uuid.UUID(int=7),
        "h": b"\x00\xff\x10", "j": {"nested": [1, "two", None, True]}, "d": Decimal("12.3450"), "i": None}


def run(coro):
    return asyncio.run(coro)


async def _setup(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(ECHO)


async def _prepared_names(db: AsyncPsycopgDatabase) -> list[str]:
    conn = await db.pool.get()
    try:
        cur = await conn.execute("select name from pg_prepared_statements where name like 'tollbooth_rpc_%' order by 1")
        return [row[0] for row in await cur.fetchall()]
    finally:
        db.pool.put(conn)


def test_every_argument_and_result_type_matches_psycopg_s_cursor(fresh_dsn):
    calls = [("echo_args", ARGS), ("echo_bigint", {"n": 2 ** 63 - 1}), ("echo_uuid", {"u": str(uuid.UUID(int=9))}),
             ("nothing", {}), ("health_check", {})]

    async def go():
        await _setup(fresh_dsn)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1)
        try:
            lean = await db.rpc_pipeline(calls)
            conn = await db.pool.get()
            try:
                cursor = [(await _run_one(conn, rpc_sql(fn, args)))[0] for fn, args in calls]
            finally:
                db.pool.put(conn)
            return lean, cursor
        finally:
            await db.close()

    lean, cursor = run(go())
    assert lean[0] == {"t": ARGS["t"], "n": -(2 ** 63), "b": False, "u": str(uuid.UUID(int=7)), "h": "00ff10",
                       "j": {"nested": [1, "two", None, True]}, "d": "12.3450", "i": None}
    assert lean[1] == 2 ** 63 - 1 and lean[2] == uuid.UUID(int=9) and lean[3] is None and lean[4]["ok"] is True
    assert [type(v) for v in lean] == [type(v) for v in cursor]
    assert lean[:4] == cursor[:4], "the same values as psycopg's cursor path"


def test_each_statement_is_prepared_once_per_connection(fresh_dsn):
    async def go():
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1)
        try:
            for _ in range(3):
                await db.rpc("health_check", {})
            await db.rpc_pipeline([("health_check", {}), ("health_check", {})])
            return await _prepared_names(db)
        finally:
            await db.close()

    names = run(go())
    assert len(names) == 1, names


def test_a_nul_in_a_string_is_400_and_sends_nothing(fresh_dsn):
    for refused in ("1\x00", "lone \ud800"):
        with pytest.raises(db_prepared.Unsupported):
            db_prepared.encode_args({"n": refused})

    async def go():
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1)
        try:
            with pytest.raises(BadRequest):
                await db.rpc("echo_bigint", {"n": "1\x00"})
            return await db.rpc("health_check", {})
        finally:
            await db.close()

    assert run(go())["ok"] is True


def test_values_without_a_text_form_take_psycopg_s_cursor(fresh_dsn):
    at = dt.datetime(2026, 11, 22, 9, 30, tzinfo=dt.UTC)
    with pytest.raises(db_prepared.Unsupported):
        db_prepared.encode_args({"at": at})

    async def go():
        await _setup(fresh_dsn)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1)
        try:
            value = await db.rpc("echo_at", {"at": at, "x": 0.5})
            return value, await _prepared_names(db)
        finally:
            await db.close()

    value, names = run(go())
    assert value == "2026-11-22 09:30 0.5"
    assert names == [], "no statement of ours was prepared for it"


def test_an_unknown_function_is_its_mapped_error_and_the_connection_stays_usable(fresh_dsn):
    async def go():
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1)
        try:
            with pytest.raises(TollboothError) as unknown:
                await db.rpc_pipeline([("no_such_function", {"x": 1}), ("health_check", {})])
            with pytest.raises(TollboothError) as again:
                await db.rpc("no_such_function", {"x": 1})
            return unknown.value, again.value, await db.rpc("health_check", {}), db.pool._size
        finally:
            await db.close()

    unknown, again, health, size = run(go())
    assert unknown.status == again.status == 404, "a prepare refused is the same error each time"
    assert health["ok"] is True and size == 1, "one connection served every call"


def test_an_error_after_its_prepare_keeps_the_statement_for_the_next_call(fresh_dsn):
    async def go():
        await _setup(fresh_dsn)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1)
        try:
            with pytest.raises(TollboothError) as bad:
                await db.rpc("echo_bigint", {"n": "not a number"})
            return bad.value, await db.rpc("echo_bigint", {"n": 5}), await _prepared_names(db)
        finally:
            await db.close()

    bad, five, names = run(go())
    assert bad.status == 400 and five == 5 and len(names) == 1


def test_a_call_cancelled_mid_exchange_closes_its_connection(fresh_dsn):
    async def go():
        await _setup(fresh_dsn)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1)
        try:
            await db.rpc("health_check", {})
            conn = await db.pool.get()
            db.pool.put(conn)
            call = asyncio.ensure_future(db.rpc("slow", {}))
            await asyncio.sleep(0.2)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            closed_after_cancel = conn.closed
            size_after_cancel = db.pool._size
            return closed_after_cancel, size_after_cancel, await db.rpc("health_check", {})
        finally:
            await db.close()

    closed, size, health = run(go())
    assert closed and size == 0, "the connection was left mid-exchange: closed, its slot freed"
    assert health["ok"] is True, "the next call gets a new connection"


def test_a_connection_killed_between_calls_is_retried_once_on_a_new_one(fresh_dsn):
    async def go():
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=1)
        try:
            await db.rpc("health_check", {})
            conn = await db.pool.get()
            pid = conn.pgconn.backend_pid
            db.pool.put(conn)
            async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as admin:
                await admin.execute("select pg_terminate_backend(%s)", [pid])
            await asyncio.sleep(0.1)
            db.pool.suspect_since = 0.0  # as if it had just been used: no check before the call
            health = await db.rpc_pipeline([("health_check", {}), ("health_check", {})])
            conn = await db.pool.get()
            new_pid = conn.pgconn.backend_pid
            db.pool.put(conn)
            return health, pid, new_pid
        finally:
            await db.close()

    health, pid, new_pid = run(go())
    assert [h["ok"] for h in health] == [True, True] and new_pid != pid


def test_a_conveyor_that_fails_while_its_reader_waits_stops_watching_the_socket_before_closing_it(fresh_dsn):
    async def go():
        await _setup(fresh_dsn)
        conn = await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True)
        conveyor = db_prepared.Conveyor(conn)
        answer = conveyor.send([("slow", [], ())])
        await asyncio.sleep(0.2)  # the reader waits on the socket
        fd = conn.pgconn.socket
        loop = asyncio.get_running_loop()
        watched_before = fd in loop._selector.get_map()  # the default (selector) event loop
        conveyor.abort()
        watched_after = fd in loop._selector.get_map()
        with pytest.raises(psycopg.OperationalError):
            await answer
        return watched_before, watched_after, conn.closed

    before, after, closed = run(go())
    assert before and not after, "unwatched before its number can be a new connection's"
    assert closed
