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
transaction and all of them in one round trip. A `Conveyor` keeps the connection in
pipeline mode and takes more calls while earlier ones run (a lane's, lib.core.lanes);
`run_each` is one send on one. Results are loaded by the connection's own
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
from collections import deque
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


class _Call:
    __slots__ = ("error", "name", "prepare", "value")

    def __init__(self, name: bytes, prepare: bool):
        self.name, self.prepare = name, prepare  # prepare: its prepare's result comes first
        self.value: Any = None
        self.error: psycopg.Error | None = None


Outcome = tuple[Any, psycopg.Error | None]
Call = tuple[str, list[Param], tuple[str, ...]]


class Conveyor:
    """A connection in pipeline mode that takes calls while earlier ones still run.

    `send` writes its calls at once, behind those in flight (each prepared first when
    this connection has not prepared its statement, then a Sync: its own transaction),
    and answers a future of their (value, error), set when the last of them returned:
    the server runs what it is sent back to back, with no round trip between one
    caller's calls and the next's. One reader task takes the results in the order sent
    while anything is in flight; `on_answered` gets each send's outcomes as they come
    (None when the connection failed).
    A connection that fails mid-exchange (the server gone, or `abort`) is closed and
    every send in flight gets the error: nothing else may use it. `release` ends
    pipeline mode once nothing is in flight and gives the connection back."""

    __slots__ = ("_calls", "_encoding", "_give_back", "_groups", "_pg", "_poked", "_prepared", "_preparing", "_reader",
                 "_writer", "conn", "error", "on_answered")

    def __init__(self, conn: psycopg.AsyncConnection[Any],
                 give_back: Callable[[psycopg.AsyncConnection[Any]], None] | None = None):
        self.conn, self._give_back = conn, give_back
        self._pg = conn.pgconn
        self._encoding = conn.info.encoding
        self._prepared = _prepared.setdefault(conn, set())
        self._preparing: set[bytes] = set()
        self._calls: deque[_Call] = deque()  # sent and not yet answered, in order
        self._groups: deque[tuple[list[_Call], asyncio.Future[list[Outcome]]]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._poked: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self.on_answered: Callable[[list[Outcome] | None], None] | None = None
        self._pg.enter_pipeline_mode()

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    @property
    def broken(self) -> bool:
        return self.error is not None

    def send(self, calls: list[Call]) -> asyncio.Future[list[Outcome]]:
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[list[Outcome]] = loop.create_future()
        group: list[_Call] = []
        pg = self._pg
        # a bad name raises here, before anything is written: the calls in flight are not its
        statements = [_statement(fn, arg_names) for fn, _, arg_names in calls]
        try:
            for (name, sql), (_, params, _) in zip(statements, calls, strict=True):
                call = _Call(name, name not in self._prepared and name not in self._preparing)
                if call.prepare:
                    pg.send_prepare(name, sql)
                    self._preparing.add(name)
                pg.send_query_prepared(name, params)
                pg.pipeline_sync()
                group.append(call)
            self._calls.extend(group)
            self._groups.append((group, answered))
            if pg.flush() and self._writer is None:
                self._writer = loop.create_task(self._write())
        except BaseException as exc:
            self._fail(exc)
            raise
        if self._reader is None:
            self._reader = loop.create_task(self._read())
        return answered

    def abort(self) -> None:
        """Leave the exchange (a caller cancelled mid-call): the connection is closed."""
        self._fail(psycopg.OperationalError("the exchange was abandoned mid-call"))

    def release(self) -> None:
        """Nothing in flight: out of pipeline mode, and the connection to `give_back`
        (which pools it, or closes a broken one)."""
        if self.error is None:
            if self._calls:
                raise RuntimeError("a conveyor is released only when nothing is in flight")
            try:
                self._pg.exit_pipeline_mode()
            except psycopg.Error as exc:
                self._fail(exc)
        if self._give_back is not None:
            self._give_back(self.conn)

    async def _write(self) -> None:
        """The rest of a send the socket did not take at once."""
        try:
            while self.error is None and self._pg.flush():
                await self._ready(write=True)
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._writer = None
        self._poke()  # flushing reads what arrived meanwhile: the reader looks again

    def _poke(self) -> None:
        if self._poked is not None:
            _wake(self._poked)

    async def _ready(self, *, write: bool = False) -> None:
        """Until the socket can be written, or read (or `_poke`d). `_fail` unwatches it
        before closing it: its number may be a new connection's by the time we wake."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._pg.socket
        if write:
            loop.add_writer(fd, _wake, ready)
        else:
            self._poked = ready
            loop.add_reader(fd, _wake, ready)
        try:
            await ready
        finally:
            if self.error is None:
                (loop.remove_writer if write else loop.remove_reader)(fd)
            if not write:
                self._poked = None

    async def _read(self) -> None:
        try:
            while self._calls and self.error is None:
                self._pg.consume_input()
                self._take()
                if self._calls and self.error is None:
                    await self._ready()
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._reader = None

    def _take(self) -> None:
        """The results that arrived, in the order sent: per call, its prepare's (when
        sent), its execution's, then its Sync, which answers its send when it is the last."""
        pg = self._pg
        while self._calls and not pg.is_busy():
            result = pg.get_result()
            if result is None:  # the end of one statement's results
                continue
            call, status = self._calls[0], result.status
            if status == pq.ExecStatus.PIPELINE_SYNC:
                self._calls.popleft()
                group, answered = self._groups[0]
                if group[-1] is call:
                    self._groups.popleft()
                    outcomes = [(c.value, c.error) for c in group]
                    if not answered.done():
                        answered.set_result(outcomes)
                    if self.on_answered is not None:
                        self.on_answered(outcomes)
            elif call.prepare:
                call.prepare = False
                self._preparing.discard(call.name)
                if status == pq.ExecStatus.COMMAND_OK:
                    self._prepared.add(call.name)
                else:
                    call.error = error_from_result(result, self._encoding)
            elif status == pq.ExecStatus.TUPLES_OK:
                if result.ntuples:
                    loader = Transformer(self.conn)
                    loader.set_pgresult(result)
                    call.value = loader.load_row(0, tuple)[0]
            elif call.error is None:  # its own error, or aborted by its prepare's
                call.error = error_from_result(result, self._encoding)

    def _fail(self, exc: BaseException) -> None:
        if self.error is not None:
            return
        self.error = exc if isinstance(exc, Exception) else psycopg.OperationalError(
            "the exchange was abandoned mid-call")
        if self._reader is not None or self._writer is not None:
            try:
                fd = self._pg.socket
            except psycopg.Error:  # already closed: nothing is watched
                pass
            else:
                loop = asyncio.get_running_loop()
                loop.remove_reader(fd)
                loop.remove_writer(fd)
        self._pg.finish()  # mid-exchange: nothing else may use this connection
        groups, self._groups = self._groups, deque()
        self._calls.clear()
        for _, answered in groups:
            if not answered.done():
                answered.set_exception(self.error)
        for task in (self._reader, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self.on_answered is not None:
            self.on_answered(None)


async def run_each(conn: psycopg.AsyncConnection[Any], calls: list[Call]) -> list[Outcome]:
    """Each (function, encoded arguments, argument names) in order, each its own
    transaction, in one round trip. Answers each call's (value, error) once every call
    ran: the calls of several requests sent together each get their own answer. A
    connection left mid-exchange (cancelled, or the server gone) is closed: the pool
    then drops it."""
    if not calls:
        return []
    conveyor = Conveyor(conn)
    try:
        outcomes = await conveyor.send(calls)
    except BaseException:
        conveyor.abort()
        raise
    conveyor.release()
    return outcomes
