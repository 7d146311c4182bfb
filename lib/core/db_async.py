"""The database for async handlers: the same `rpc(fn, args)` contract as lib.core.db,
awaited.

`AsyncPsycopgDatabase` runs on a lean pool of autocommit connections (`ConnectionPool`
below) with the rules of the sync pool: connections are checked before they are handed
out (one round trip, only when the connection sat idle long enough that a Postgres
restart may have killed it), a call that met a dead connection is retried once on a
checked one (and every connection idle since is checked before its next use), every
call runs under the pooled `statement_timeout`, and every failure maps through the one
SQLSTATE table (lib.core.errors) to the same `TollboothError`s (503 with `retry-after`
when the database is away). A pool belongs to one event loop: `get_async_database()`
keeps one per running loop. When the process-wide database is not psycopg (PostgREST,
or a test's fault-injecting wrapper set with `set_database`), its sync `rpc` runs in a
thread.
"""
from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads

from lib.core import db as sync_db
from lib.core import db_prepared
from lib.core.config import get_settings
from lib.core.errors import ServiceUnavailable
from lib.core.lanes import Lanes

# a connection idle longer than this is pinged before use (a restart in between killed it)
CHECK_IDLE_SECONDS = 1.0

AsyncConn = psycopg.AsyncConnection[Any]
PreparedCall = tuple[str, list[db_prepared.Param], tuple[str, ...]]
T = TypeVar("T")


class AsyncDatabase(Protocol):
    # whether rpc_pipeline sends its calls in one round trip (else one after another)
    pipelined: bool

    async def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any: ...

    async def rpc_pipeline(self, calls: list[tuple[str, dict[str, Any]]], lane: Hashable | None = None
                           ) -> list[Any]: ...

    async def close(self) -> None: ...


def rpc_sql(fn: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    named = ", ".join(f"{sync_db._check_name(k)} := %({k})s" for k in args)
    params = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in args.items()}
    return f"select public.{sync_db._check_name(fn)}({named})", params


async def _run_one(conn: AsyncConn, query: tuple[str, dict[str, Any]]) -> list[Any]:
    cur = await conn.execute(*query)
    row = await cur.fetchone()
    return [row[0] if row else None]


async def _run_pipeline(conn: AsyncConn, queries: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    rows: list[Any] = []
    first_error: psycopg.Error | None = None
    async with conn.pipeline() as pipeline:
        cursors = []
        for sql, params in queries:
            cursors.append(cur := conn.cursor())
            await cur.execute(sql, params)
            await pipeline.sync()  # the end of this call's transaction
        for cur in cursors:
            try:
                row = await cur.fetchone()
            except psycopg.Error as exc:
                first_error = first_error or exc
                row = None
            rows.append(row[0] if row else None)
    if first_error is not None:
        raise first_error
    return rows


# a call that gave up waiting: lock_timeout (55P03), statement_timeout (57014)
GAVE_UP_WAITING = frozenset({"55P03", "57014"})


def _waited_for_a_lock(outcomes: list[db_prepared.Outcome]) -> bool:
    return any(error is not None and error.sqlstate in GAVE_UP_WAITING for _, error in outcomes)


def _unless_lost(outcomes: list[db_prepared.Outcome]) -> list[db_prepared.Outcome]:
    """`outcomes`, unless one says the connection died under its call: that error raises,
    so the retry-once rule (`_retrying`) sends them all once more."""
    lost = next((error for _, error in outcomes if error is not None and sync_db.connection_lost(error)), None)
    if lost is not None:
        raise lost
    return outcomes


class ConnectionPool:
    """At most `max_size` autocommit connections of one event loop: the most recently
    used idle one first (its statements are prepared and its buffers warm), a new one
    while under the limit, else the first to come back, within `timeout` (then 503).
    A connection comes back only idle and healthy; any other is closed and its slot
    freed. Why not psycopg_pool: its checkout and return (locks, callbacks, statistics,
    a maintenance task) cost about twice the round trip itself on the proxy's hot path,
    and nothing it adds (minimum size, background reconnection) is needed here: a
    connection is made when a call needs one, and a database that is away answers 503."""

    def __init__(self, dsn: str, *, max_size: int, timeout: float, statement_timeout_ms: int):
        self.dsn, self.max_size, self.timeout = dsn, max(max_size, 1), timeout
        self.statement_timeout_ms = statement_timeout_ms
        self._idle: list[tuple[AsyncConn, float]] = []
        self._size = 0
        self._waiters: deque[asyncio.Future[AsyncConn | None]] = deque()
        self._closed = False
        self._closing: set[asyncio.Future[None]] = set()
        self.suspect_since = 0.0  # connections idle since this moment are checked before use

    async def get(self) -> AsyncConn:
        if self._closed:
            raise ServiceUnavailable("database pool closed")
        while self._idle:
            conn, last = self._idle.pop()
            if conn.closed:
                self._size -= 1
                continue
            if last <= self.suspect_since or time.monotonic() - last > CHECK_IDLE_SECONDS:
                try:
                    await conn.execute("")
                except psycopg.Error:
                    await self._discard(conn)
                    continue
            return conn
        if self._size < self.max_size:
            return await self._connect()
        waiter: asyncio.Future[AsyncConn | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                handed = await waiter
        except (TimeoutError, asyncio.CancelledError):
            if waiter.done() and not waiter.cancelled() and (given := waiter.result()) is not None:
                self.put(given)  # handed over just as we gave up: pass it on
            elif waiter.done() and not waiter.cancelled():
                self._wake()  # a freed slot we will not use
            else:
                waiter.cancel()
            raise
        return handed if handed is not None else await self.get()

    async def _connect(self) -> AsyncConn:
        self._size += 1
        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True,
                                                         connect_timeout=int(max(self.timeout, 1)))
            set_json_loads(sync_db._json_loads, conn)
            if self.statement_timeout_ms > 0:
                await conn.execute(f"set statement_timeout = {int(self.statement_timeout_ms)}")
        except BaseException:
            self._size -= 1
            self._wake()
            raise
        return conn

    def put(self, conn: AsyncConn) -> None:
        """Back to the pool (healthy and idle), else closed and its slot freed."""
        if self._closed or conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            self._size -= 1
            if not conn.closed:
                closing = asyncio.ensure_future(conn.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            self._wake()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append((conn, time.monotonic()))

    async def _discard(self, conn: AsyncConn) -> None:
        self._size -= 1
        try:
            await conn.close()
        finally:
            self._wake()

    def _wake(self) -> None:
        """A slot is free: the first live waiter makes a connection of its own."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._size -= 1
            await conn.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()


class AsyncPsycopgDatabase:
    def __init__(self, dsn: str, *, pool_size: int = 8, connect_timeout: float = 5.0,
                 statement_timeout_ms: int = 15000):
        self.dsn = dsn
        self.statement_timeout_ms = statement_timeout_ms
        self.pool = ConnectionPool(dsn, max_size=pool_size, timeout=connect_timeout,
                                   statement_timeout_ms=statement_timeout_ms)
        self.lanes: Lanes[PreparedCall, db_prepared.Outcome] = Lanes(self._open_conveyor, self._send,
                                                                     stalled=_waited_for_a_lock)

    pipelined = True

    async def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        return (await self.rpc_pipeline([(fn, args or {})]))[0]

    async def rpc_pipeline(self, calls: list[tuple[str, dict[str, Any]]], lane: Hashable | None = None
                           ) -> list[Any]:
        """The calls in order, each its own transaction, sent together in one round trip
        (prepared statements with a Sync after each: lib.core.db_prepared; psycopg's
        cursor for arguments only its adapters can send). The first error raises,
        after every call ran. In a `lane` (lib.core.lanes: the organization whose rows
        they lock) they go on the lane's one connection, behind its calls in flight.
        A connection that died under them runs them all once more on a checked one:
        only for calls that are idempotent (every RPC the proxy sends is, by request id)."""
        try:
            prepared = [(fn, db_prepared.encode_args(args), tuple(args)) for fn, args in calls]
        except db_prepared.Unsupported:  # an argument only psycopg's adapters can send
            queries = [rpc_sql(fn, args) for fn, args in calls]
            return await self._on_connection(
                lambda conn: _run_one(conn, queries[0]) if len(queries) == 1 else _run_pipeline(conn, queries))
        outcomes = await (self._send(prepared) if lane is None else self._in_lane(lane, prepared))
        for _, error in outcomes:
            if error is not None:
                raise sync_db.map_psycopg_error(error) from error
        return [value for value, _ in outcomes]

    async def _send(self, prepared: list[PreparedCall]) -> list[db_prepared.Outcome]:
        """Prepared calls in one round trip on a pooled connection, each answering (value, error)."""
        async def work(conn: AsyncConn) -> list[db_prepared.Outcome]:
            return _unless_lost(await db_prepared.run_each(conn, prepared))

        return await self._on_connection(work)

    async def _in_lane(self, lane: Hashable, prepared: list[PreparedCall]) -> list[db_prepared.Outcome]:
        """Prepared calls on their lane's conveyor."""
        async def once() -> list[db_prepared.Outcome]:
            return _unless_lost(await self.lanes.run(lane, prepared))

        return await self._retrying(once)

    async def _open_conveyor(self) -> db_prepared.Conveyor:
        """A pooled connection in pipeline mode for a lane, given back when the lane is idle."""
        conn = await self._connection()
        try:
            return db_prepared.Conveyor(conn, give_back=self.pool.put)
        except BaseException:
            self.pool.put(conn)
            raise

    async def _connection(self) -> AsyncConn:
        """A pooled connection, or 503 when every one is busy past the pool's timeout or
        none can be made (the database is away)."""
        try:
            return await self.pool.get()
        except (TimeoutError, psycopg.Error) as exc:
            raise ServiceUnavailable("database unreachable") from exc

    async def _on_connection(self, work: Callable[[AsyncConn], Awaitable[T]]) -> T:
        """`work` on a pooled connection (given back after: closed and its slot freed
        unless it is idle and healthy)."""
        async def once() -> T:
            conn = await self._connection()
            try:
                return await work(conn)
            finally:
                self.pool.put(conn)

        return await self._retrying(once)

    async def _retrying(self, once: Callable[[], Awaitable[T]]) -> T:
        """`once()`; when the connection died under it, every one idle since is suspect
        (checked before use) and it runs once more, on a checked one. Errors map to
        TollboothErrors."""
        try:
            return await once()
        except psycopg.Error as exc:
            if not sync_db.connection_lost(exc):
                raise sync_db.map_psycopg_error(exc) from exc
            self.pool.suspect_since = time.monotonic()
        try:
            return await once()
        except psycopg.Error as exc:
            raise sync_db.map_psycopg_error(exc) from exc

    async def ping(self) -> None:
        await self.rpc("health_check", {})

    async def close(self) -> None:
        await self.pool.close()


class ThreadedAsyncDatabase:
    """A sync Database (PostgREST, a test's wrapper) awaited through a worker thread."""

    pipelined = False

    def __init__(self, inner: sync_db.Database):
        self.inner = inner

    async def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self.inner.rpc, fn, args)

    async def rpc_pipeline(self, calls: list[tuple[str, dict[str, Any]]], lane: Hashable | None = None
                           ) -> list[Any]:
        return [await self.rpc(fn, args) for fn, args in calls]

    async def close(self) -> None:
        return None


class InLane:
    """`db` with every call in one lane (lib.core.lanes): for code that calls `rpc`
    (lib.chat.replay) on behalf of one organization."""

    def __init__(self, db: AsyncDatabase, lane: Hashable):
        self.db, self.lane = db, lane
        self.pipelined = db.pipelined

    async def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        return (await self.db.rpc_pipeline([(fn, args or {})], lane=self.lane))[0]

    async def rpc_pipeline(self, calls: list[tuple[str, dict[str, Any]]], lane: Hashable | None = None
                           ) -> list[Any]:
        return await self.db.rpc_pipeline(calls, lane=self.lane if lane is None else lane)

    async def close(self) -> None:
        return None


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[object, AsyncDatabase]] = (
    weakref.WeakKeyDictionary())


_closing: set[asyncio.Task[None]] = set()


def get_async_database() -> AsyncDatabase:
    """This event loop's database: an async pool when the process-wide database is
    psycopg's (or not built yet and DATABASE_URL is set), else the sync one in a thread.
    Follows `set_database`: a replaced process-wide database gets a new async one."""
    loop = asyncio.get_running_loop()
    current = sync_db.current_database()
    settings = get_settings()
    key: Any
    if current is None and sync_db.transport_of(settings) == "psycopg":
        key = ("psycopg", settings.require("database_url"), settings.db_pool_size, settings.db_statement_timeout_ms)
    elif isinstance(current, sync_db.PsycopgDatabase):
        key = ("psycopg", current.dsn, current.pool.max_size, current.statement_timeout_ms)
    else:
        key = current if current is not None else sync_db.get_database()
    cached = _per_loop.get(loop)
    if cached is not None and (cached[0] is key or cached[0] == key):
        return cached[1]
    if cached is not None:
        _closing.add(task := loop.create_task(cached[1].close()))
        task.add_done_callback(_closing.discard)
    adb: AsyncDatabase
    if isinstance(key, tuple):
        adb = AsyncPsycopgDatabase(key[1], pool_size=key[2], statement_timeout_ms=key[3])
    else:
        adb = ThreadedAsyncDatabase(key)
    _per_loop[loop] = (key, adb)
    return adb


async def close_async_database() -> None:
    """Close this loop's pool (the ASGI app's shutdown)."""
    cached = _per_loop.pop(asyncio.get_running_loop(), None)
    if cached is not None:
        await cached[1].close()
