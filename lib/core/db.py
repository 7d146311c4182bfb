"""Two database transports behind one small interface.

Every state change is one SQL function in `public` that takes named arguments and
returns `jsonb`; `Database.rpc(fn, args)` calls it and returns the decoded JSON. Through
psycopg that is `select public.fn(a := $1, …)`; through PostgREST it is
`POST /rest/v1/rpc/fn` with the service-role key. Both raise the same `TollboothError`
for the same SQLSTATE (see lib.core.errors.from_sqlstate). Money travels as strings inside
the JSON, so neither transport ever sees a float.
"""
from __future__ import annotations

import json
import re
import threading
from decimal import Decimal
from functools import partial
from typing import Any, Protocol

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from lib.core.config import Settings, get_settings
from lib.core.errors import BadRequest, MissingSetting, ServiceUnavailable, TollboothError, from_sqlstate

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_json_loads = partial(json.loads, parse_float=Decimal)


class Database(Protocol):
    def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any: ...

    def ping(self) -> None: ...


def _check_name(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a function or argument name: {name!r}")
    return name


def connection_lost(exc: psycopg.Error) -> bool:
    """The connection died under the call (server restarted, backend terminated,
    network gone): the same call on a fresh connection may well succeed."""
    code = exc.sqlstate or ""
    if isinstance(exc, psycopg.OperationalError) and not code:
        return True
    return code.startswith("08") or code in ("57P01", "57P02", "57P03")


def map_psycopg_error(exc: psycopg.Error) -> TollboothError:
    if isinstance(exc, psycopg.OperationalError) and not exc.sqlstate:
        return ServiceUnavailable("database unreachable")
    if isinstance(exc, psycopg.DataError) and not exc.sqlstate:
        # refused by the driver before it reached the server (a NUL in a string, an
        # integer out of range): bad input, never a 500
        return BadRequest(f"a value cannot be stored: {exc}")
    message = exc.diag.message_primary if exc.diag and exc.diag.message_primary else str(exc)
    return from_sqlstate(exc.sqlstate, message, exc.diag.message_detail if exc.diag else None)


class PsycopgDatabase:
    """Direct connection (local, tests, and Supabase's pooler in production)."""

    def __init__(self, dsn: str, *, pool_size: int = 8, connect_timeout: float = 5.0,
                 statement_timeout_ms: int = 15000):
        self.dsn = dsn
        self.statement_timeout_ms = statement_timeout_ms
        self.pool = ConnectionPool(
            dsn, min_size=1, max_size=max(pool_size, 1), open=False, timeout=connect_timeout,
            kwargs={"autocommit": True, "connect_timeout": int(max(connect_timeout, 1))},
            configure=self._configure, name="tollbooth",
            # a connection handed out is alive: after a Postgres restart the pool
            # notices on checkout (one round trip) instead of failing the request
            check=ConnectionPool.check_connection,
            reconnect_timeout=60,
        )
        self._opened = False
        self._lock = threading.Lock()

    def _configure(self, conn: psycopg.Connection) -> None:
        set_json_loads(_json_loads, conn)
        if self.statement_timeout_ms > 0:
            # no single call may hold a pooled connection for long (lock waits have
            # their own, shorter, lock_timeout in the metering functions)
            conn.execute(f"set statement_timeout = {int(self.statement_timeout_ms)}")

    def _open(self) -> None:
        if not self._opened:
            with self._lock:
                if not self._opened:
                    self.pool.open(wait=False)
                    self._opened = True

    def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        args = args or {}
        named = ", ".join(f"{_check_name(k)} := %({k})s" for k in args)
        sql = f"select public.{_check_name(fn)}({named})"
        params = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in args.items()}
        self._open()
        for attempt in (1, 2):
            try:
                with self.pool.connection() as conn:
                    row = conn.execute(sql, params).fetchone()
                return row[0] if row else None
            except PoolTimeout as exc:  # pool exhausted or database unreachable: no second wait
                raise ServiceUnavailable("database unreachable") from exc
            except psycopg.Error as exc:
                if attempt == 1 and connection_lost(exc):
                    # the connection died under us (the pool's check raced a restart):
                    # once more on a fresh one; every RPC is idempotent or refuses a replay
                    continue
                raise map_psycopg_error(exc) from exc
            except TimeoutError as exc:  # pool exhausted or database unreachable
                raise ServiceUnavailable("database unreachable") from exc
        raise ServiceUnavailable("database unreachable")  # pragma: no cover (the loop returns or raises)

    def ping(self) -> None:
        self._open()
        try:
            with self.pool.connection(timeout=3) as conn:
                conn.execute("select 1")
        except (psycopg.Error, TimeoutError) as exc:
            raise ServiceUnavailable("database unreachable") from exc

    def close(self) -> None:
        if self._opened:
            self.pool.close()
            self._opened = False


class PostgrestDatabase:
    """Through PostgREST with the service-role key (supabase-py)."""

    def __init__(self, url: str, service_role_key: str, *, client: Any = None):
        if client is None:
            from supabase import ClientOptions, create_client

            client = create_client(url, service_role_key,
                                   options=ClientOptions(schema="public", postgrest_client_timeout=10))
        self.client = client

    def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        import httpx
        from postgrest.exceptions import APIError

        try:
            response = self.client.rpc(_check_name(fn), args or {}).execute()
        except APIError as exc:
            raise from_sqlstate(str(exc.code) if exc.code else None, exc.message or "database error",
                                exc.details if isinstance(exc.details, str) else None) from exc
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("PostgREST unreachable") from exc
        return _decimalize(response.data)

    def ping(self) -> None:
        self.rpc("health_check", {})


def _decimalize(value: Any) -> Any:
    """PostgREST JSON is parsed with floats; money never travels as a JSON number, but
    keep any number exact by round-tripping floats through their repr."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimalize(v) for v in value]
    return value


_default: Database | None = None
_default_lock = threading.Lock()


def transport_of(settings: Settings) -> str | None:
    """'psycopg' or 'postgrest': the configured one, else the one whose settings are set."""
    if settings.db_transport is not None:
        return settings.db_transport
    return "psycopg" if settings.database_url else ("postgrest" if settings.supabase_url else None)


def make_database(settings: Settings) -> Database:
    transport = transport_of(settings)
    if transport == "psycopg":
        return PsycopgDatabase(settings.require("database_url"), pool_size=settings.db_pool_size,
                               statement_timeout_ms=settings.db_statement_timeout_ms)
    if transport == "postgrest":
        return PostgrestDatabase(settings.require("supabase_url"), settings.require("supabase_service_role_key"))
    raise MissingSetting("DATABASE_URL")


def get_database() -> Database:
    """The process-wide database, built on first use from the settings."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = make_database(get_settings())
    return _default


def current_database() -> Database | None:
    """The process-wide database if one was built or set (None: not yet)."""
    return _default


def set_database(db: Database | None) -> None:
    """Replace the process-wide database (tests, the CLI)."""
    global _default
    old, _default = _default, db
    if old is not None and old is not db and hasattr(old, "close"):
        old.close()
