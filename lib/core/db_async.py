"""The database for async handlers: the same `rpc(fn, args)` contract as lib.core.db,
awaited.

`AsyncPsycopgDatabase` runs on psycopg's `AsyncConnectionPool` with the rules of the
sync pool: connections are checked before they are handed out (one round trip, only
when the connection sat idle long enough that a Postgres restart may have killed it),
a call that met a dead connection is retried once on a checked one (and every
connection idle since is checked before its next use), every call runs under
the pooled `statement_timeout`, and every failure maps through the one SQLSTATE table
(lib.core.errors) to the same `TollboothError`s (503 with `retry-after` when the
database is away). A pool belongs to one event loop: `get_async_database()` keeps one
per running loop. When the process-wide database is not psycopg (PostgREST, or a test's
fault-injecting wrapper set with `set_database`), its sync `rpc` runs in a thread.
"""
from __future__ import annotations

import asyncio
import json
import time
import weakref
from typing import Any, Protocol

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from lib.core import db as sync_db
from lib.core.config import get_settings
from lib.core.errors import ServiceUnavailable

# a connection idle longer than this is pinged before use (a restart in between killed it)
CHECK_IDLE_SECONDS = 1.0


class AsyncDatabase(Protocol):
    async def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any: ...

    async def close(self) -> None: ...


def rpc_sql(fn: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    named = ", ".join(f"{sync_db._check_name(k)} := %({k})s" for k in args)
    params = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in args.items()}
    return f"select public.{sync_db._check_name(fn)}({named})", params


class AsyncPsycopgDatabase:
    def __init__(self, dsn: str, *, pool_size: int = 8, connect_timeout: float = 5.0,
                 statement_timeout_ms: int = 15000):
        self.dsn = dsn
        self.statement_timeout_ms = statement_timeout_ms
        self._last_used: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = weakref.WeakKeyDictionary()
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            dsn, min_size=1, max_size=max(pool_size, 1), open=False, timeout=connect_timeout,
            kwargs={"autocommit": True, "connect_timeout": int(max(connect_timeout, 1))},
            configure=self._configure, check=self._check, reset=self._returned, name="tollbooth-async",
            reconnect_timeout=60,
        )
        self._suspect_since = 0.0
        self._opened = False
        self._open_lock = asyncio.Lock()

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        set_json_loads(sync_db._json_loads, conn)
        if self.statement_timeout_ms > 0:
            await conn.execute(f"set statement_timeout = {int(self.statement_timeout_ms)}")
        self._last_used[conn] = time.monotonic()

    async def _check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Checked before it is handed out when it sat idle, or when a sibling was found
        dead since it was last used (a restart kills them all); fresh use needs no ping."""
        last = self._last_used.get(conn, 0.0)
        if last <= self._suspect_since or time.monotonic() - last > CHECK_IDLE_SECONDS:
            await conn.execute("")

    async def _returned(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._last_used[conn] = time.monotonic()

    async def _open(self) -> None:
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    await self.pool.open(wait=False)
                    self._opened = True

    async def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        sql, params = rpc_sql(fn, args or {})
        await self._open()
        for attempt in (1, 2):
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(sql, params)
                    row = await cur.fetchone()
                return row[0] if row else None
            except PoolTimeout as exc:  # pool exhausted or database unreachable: no second wait
                raise ServiceUnavailable("database unreachable") from exc
            except psycopg.Error as exc:
                if attempt == 1 and sync_db.connection_lost(exc):
                    # the connection died under us: every one idle since is suspect (checked
                    # before use), and the call runs once more on a checked one
                    self._suspect_since = time.monotonic()
                    continue
                raise sync_db.map_psycopg_error(exc) from exc
            except TimeoutError as exc:
                raise ServiceUnavailable("database unreachable") from exc
        raise ServiceUnavailable("database unreachable")  # pragma: no cover

    async def ping(self) -> None:
        await self.rpc("health_check", {})

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.pool.close()


class ThreadedAsyncDatabase:
    """A sync Database (PostgREST, a test's wrapper) awaited through a worker thread."""

    def __init__(self, inner: sync_db.Database):
        self.inner = inner

    async def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self.inner.rpc, fn, args)

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
