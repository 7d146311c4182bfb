"""RPC calls as prepared statements on a psycopg connection's libpq handle: the async
pool's hot path (the chat proxy's reserve and settle) without psycopg's cursor machinery.

psycopg's cursor parses every query for its placeholders, adapts each argument through
its dumpers and, in a pipeline, drives a generator per result: for the proxy's settlement
(22 arguments, then the flush, in one pipeline) that cost 245-268 us of Python per call on
this machine, where this module takes 54 us (bench: the same pipeline against the same
server, back to back). Here each (function, argument names) is prepared once per
connection as `select public.fn(a := $1, ...)` with untyped parameters (the server types
each from the function's signature, as it already did the strings psycopg sent untyped),
arguments go as text, and every call is followed by a Sync, so each runs in its own
transaction and all of them in one round trip. Results are loaded by the connection's own
psycopg loaders (its Transformer, so its JSON loader too) and errors are built by psycopg
(`error_from_result`): a caller cannot tell this path from the cursor's.

`encode_args` raises `Unsupported` for a value it has no text form for (floats, dates and
anything else the proxy never sends) and for a string with a NUL: the caller then takes
psycopg's cursor path, which sends the first and refuses the second as it always did.

Named prepared statements live in the server session, as those psycopg's cursor already
made on its own after five runs of a query did: the connection must be direct or through
a pooler in session mode (or one that tracks prepared statements).
"""
from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg import pq
from psycopg.adapt import Transformer
from psycopg.errors import error_from_result

from lib.core.db import _check_name

Param = bytes | None


class Unsupported(Exception):
    """An argument this module cannot send as text: use psycopg's cursor."""


def _str(value: str) -> bytes:
    if "\x00" in value:
        raise Unsupported("NUL")  # psycopg's cursor refuses it as it always did (400)
    try:
        return value.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: whatever psycopg's cursor does with it
        raise Unsupported("surrogate") from exc


def _decimal(value: Decimal) -> bytes:
    if not value.is_finite():
        raise Unsupported(value)
    return str(value).encode()


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _bytea(value: bytes | bytearray | memoryview) -> bytes:
    return b"\\x" + bytes(value).hex().encode()


# the text form of each type the proxy sends (exact types: a subclass is Unsupported)
_TEXT: dict[type, Callable[[Any], bytes]] = {
    str: _str, int: lambda v: str(v).encode(), bool: lambda v: b"t" if v else b"f",
    UUID: lambda v: str(v).encode(), Decimal: _decimal, dict: _json, list: _json,
    bytes: _bytea, bytearray: _bytea, memoryview: _bytea,
}


def _text(value: object) -> Param:
    if value is None:
        return None
    encode = _TEXT.get(type(value))
    if encode is None:
        raise Unsupported(type(value).__name__)
    return encode(value)


def encode_args(args: Mapping[str, Any]) -> list[Param]:
    return [_text(v) for v in args.values()]


# one statement name per (function, argument names), the same on every connection
_names: dict[tuple[str, tuple[str, ...]], tuple[bytes, bytes]] = {}
# the statements each connection has prepared
_prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], set[bytes]] = weakref.WeakKeyDictionary()


def _statement(fn: str, arg_names: tuple[str, ...]) -> tuple[bytes, bytes]:
    key = (fn, arg_names)
    found = _names.get(key)
    if found is None:
        named = ", ".join(f"{_check_name(a)} := ${i}" for i, a in enumerate(arg_names, 1))
        sql = f"select public.{_check_name(fn)}({named})".encode()
        found = _names[key] = (f"tollbooth_rpc_{len(_names)}".encode(), sql)
    return found


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def _wait(fd: int, *, write: bool = False) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    add(fd, _wake, ready)
    try:
        await ready
    finally:
        remove(fd)


class _Call:
    __slots__ = ("error", "name", "prepare", "value")

    def __init__(self, name: bytes, prepare: bool):
        self.name, self.prepare = name, prepare
        self.value: Any = None
        self.error: psycopg.Error | None = None


Outcome = tuple[Any, psycopg.Error | None]


async def run_each(conn: psycopg.AsyncConnection[Any], calls: list[tuple[str, list[Param], tuple[str, ...]]]
                   ) -> list[Outcome]:
    """Each (function, encoded arguments, argument names) in order, each its own
    transaction, in one round trip. Answers each call's (value, error) once every call
    ran: the calls of several requests sent together each get their own answer. A
    connection left mid-exchange (cancelled, or the server gone) is closed: the pool
    then drops it."""
    if not calls:
        return []
    pg = conn.pgconn
    prepared = _prepared.setdefault(conn, set())
    pending: list[_Call] = []
    pg.enter_pipeline_mode()
    try:
        for fn, params, arg_names in calls:
            name, sql = _statement(fn, arg_names)
            call = _Call(name, name not in prepared and all(c.name != name for c in pending))
            if call.prepare:
                pg.send_prepare(name, sql)
            pg.send_query_prepared(name, params)
            pg.pipeline_sync()
            pending.append(call)
        while pg.flush():
            await _wait(pg.socket, write=True)
        await _read_results(conn, pending, prepared)
        pg.exit_pipeline_mode()
    except BaseException:
        pg.finish()  # mid-exchange: nothing else may use this connection
        raise
    return [(call.value, call.error) for call in pending]


async def _read_results(conn: psycopg.AsyncConnection[Any], pending: list[_Call], prepared: set[bytes]) -> None:
    """The results in the order sent: per call, its prepare's (when sent), its
    execution's, then its Sync."""
    pg = conn.pgconn
    encoding = conn.info.encoding
    index, preparing = 0, pending[0].prepare
    while index < len(pending):
        pg.consume_input()
        while index < len(pending) and not pg.is_busy():
            result = pg.get_result()
            if result is None:  # the end of one statement's results
                continue
            call, status = pending[index], result.status
            if status == pq.ExecStatus.PIPELINE_SYNC:
                index += 1
                preparing = index < len(pending) and pending[index].prepare
            elif preparing:
                preparing = False
                if status == pq.ExecStatus.COMMAND_OK:
                    prepared.add(call.name)
                else:
                    call.error = error_from_result(result, encoding)
            elif status == pq.ExecStatus.TUPLES_OK:
                if result.ntuples:
                    loader = Transformer(conn)
                    loader.set_pgresult(result)
                    call.value = loader.load_row(0, tuple)[0]
            elif call.error is None:  # its own error, or aborted by its prepare's
                call.error = error_from_result(result, encoding)
        if index < len(pending):
            await _wait(pg.socket)
