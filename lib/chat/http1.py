"""A lean HTTP/1.1 client on asyncio, for the chat proxy's one upstream call per request.

Why not httpx: its AsyncClient (httpcore over anyio) cost about a quarter of the proxy's
CPU per request. This client does only what the chat path needs, in three pieces:

- `_Connection`, an `asyncio.Protocol` over `loop.create_connection` (TCP_NODELAY; TLS
  with certifi's roots, as httpx, for https). Responses are parsed by
  `httptools.HttpResponseParser` (llhttp, uvicorn's parser), which also decodes chunked
  transfer-encoding. Body bytes are queued as they arrive and the consumer takes all
  that is queued at each step; above `HIGH_WATER` queued bytes the socket stops being
  read until it does, so a slow consumer of a stream keeps memory bounded.
- `Http1Client`, one origin (scheme, host, port) on one event loop, with a LIFO pool of
  at most `max_idle` idle keep-alive connections, each dropped after `idle_expiry`
  seconds. A connection goes back to the pool only when its response was read to the
  end, the parser says keep-alive and the server did not say `connection: close`.
  At most `max_connections` are open at once (in use or idle; httpx's pool capped them
  at 200): a request beyond that waits for one to come back or close, for
  `connect_timeout` at the most (then httpx.PoolTimeout, a 504 like any timeout).
- `Response`: status, case-insensitive `Headers`, and the body read whole (`aread`) or
  as it arrives (`aiter_raw`, for SSE); `aclose` closes the connection when the body was
  not read to the end.

Retry: a request on a pooled connection that fails before a single response byte came
back is sent once more on a new connection, POST included. The server either never got
it or closed the idle connection as it arrived (keep-alive's usual race: the server
closes the idle connection as we start to write, and a server that closes an idle
connection does not read what arrives after). Once any byte came back, nothing is retried.

Timeouts: `connect_timeout` for TCP and TLS; `timeout` for each wait for response bytes
(as httpx's read timeout). Errors are httpx's own exception classes (ConnectTimeout,
ConnectError, ReadTimeout, ReadError, RemoteProtocolError, LocalProtocolError), so callers
map them to 502 and 504 as they did with httpx.

Not here, on purpose: HEAD (httptools cannot be told a response has no body), request
streaming, redirects, proxies, HTTP/2, content decoding (we send
`accept-encoding: identity`).
"""
from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import certifi
import httptools
import httpx

HIGH_WATER = 256 * 1024  # queued body bytes at which reading pauses (until the consumer takes them)
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of a response
_SET_BY_CLIENT = frozenset(("host", "content-length", "transfer-encoding", "connection", "accept-encoding"))
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\0]")


class Headers(Mapping[str, str]):
    """Response headers by lower-case name; a repeated header reads as its values joined
    by ", " (as httpx.Headers)."""

    __slots__ = ("_items", "_map")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        joined: dict[str, str] = {}
        for name, value in items:
            joined[name] = f"{joined[name]}, {value}" if name in joined else value
        self._map = joined

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)


class Request:
    """A request to send: checked and encoded by `Http1Client.send` (so a bad header is
    an httpx.LocalProtocolError where the caller handles transport errors)."""

    __slots__ = ("body", "headers", "method", "target")

    def __init__(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        self.method, self.target, self.headers, self.body = method, target, headers, body


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the response being read on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False  # closed, or closing: never reused
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self.on_lost: Callable[[], None] | None = None  # the client's count of open connections
        self._reset()

    def _reset(self) -> None:
        self.active = False  # a request was sent and its response is not finished
        self.received = False  # a byte of the response arrived
        self._head_bytes = 0  # bytes read while the head is incomplete
        self._header_bytes = 0  # bytes of header names and values
        self._items: list[tuple[str, str]] = []
        self._interim = False  # a 1xx response, skipped
        self.status = 0
        self.headers: Headers | None = None
        self._until_eof = False  # no content-length, not chunked: the body ends with the connection
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._paused = False
        self.complete = False
        self.keep_alive = False
        self._error: Exception | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete:  # bytes nobody asked for: the connection is spoilt
            self.close()
            return
        self.received = True
        if self.headers is None:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
            return
        except httptools.HttpParserError as exc:  # our callbacks' errors are its context
            ours = exc.__context__
            self._fail(ours if isinstance(ours, httpx.RemoteProtocolError)
                       else httpx.RemoteProtocolError(f"invalid HTTP response: {exc}"))
            return
        if self.headers is None and self._head_bytes > MAX_HEAD_BYTES:  # and still incomplete
            self._fail(_head_too_big())
            return
        if self._queued > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.complete and self._error is None:
            if exc is None and self.headers is not None and self._until_eof:
                self.complete = True  # keep_alive stays False
            elif exc is not None:
                self._error = httpx.ReadError(f"connection lost: {exc!r}")
            elif not self.received:
                self._error = httpx.RemoteProtocolError("the server closed the connection without answering")
            else:
                self._error = httpx.RemoteProtocolError("the server closed the connection mid-response")
        self._wake()
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._items.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self._header_bytes > MAX_HEAD_BYTES:  # a whole head that came in one read
            raise _head_too_big()
        status = self._parser.get_status_code()
        if status < 200:
            self._interim, self._items = True, []
            return
        self.status, self.headers = status, Headers(self._items)
        self._until_eof = "content-length" not in self.headers and "transfer-encoding" not in self.headers

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._queued += len(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        assert self.headers is not None
        self.keep_alive = (self._parser.should_keep_alive()
                           and self.headers.get("connection", "").lower() != "close")

    # used by Http1Client and Response

    def start(self, payload: bytes) -> None:
        self._reset()
        self.active = True
        if self._transport is None or self._transport.is_closing():
            self._error = httpx.RemoteProtocolError("the connection was closed before the request was sent")
        else:
            self._transport.write(payload)

    async def read_head(self, timeout: float) -> None:
        while self.headers is None:
            if self._error is not None:
                raise self._error
            await self._wait(timeout)

    async def next_chunk(self, timeout: float) -> bytes:
        """The body bytes queued (b"" at the end), waiting for some if none are."""
        while True:
            if self._chunks:
                data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._queued = 0
                if self._paused and self._transport is not None and not self.closed:
                    self._paused = False
                    self._transport.resume_reading()
                return data
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait(timeout)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: Exception) -> None:
        self._error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _head_too_big() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(f"response head over {MAX_HEAD_BYTES} bytes")


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("the server sent nothing within the read timeout"))


class Response:
    """A response whose status and headers have arrived; the body is read once, by `aread`
    or `aiter_raw`."""

    __slots__ = ("_client", "_conn", "_started", "headers", "status_code")

    def __init__(self, client: Http1Client, conn: _Connection, headers: Headers) -> None:
        self._client, self._started = client, False
        self._conn: _Connection | None = conn  # None once released or closed
        self.status_code, self.headers = conn.status, headers

    async def aread(self) -> bytes:
        conn = self._start()
        parts: list[bytes] = []
        try:
            while piece := await conn.next_chunk(self._client.timeout):
                parts.append(piece)
        except BaseException:
            self._finish(reuse=False)
            raise
        self._finish(reuse=True)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked framing removed, nothing else decoded)."""
        conn = self._start()
        try:
            while piece := await conn.next_chunk(self._client.timeout):
                yield piece
        except BaseException:  # GeneratorExit included: the consumer stopped early
            self._finish(reuse=False)
            raise
        self._finish(reuse=True)

    async def aclose(self) -> None:
        """Close the connection unless the body was read to the end (then it was pooled)."""
        self._finish(reuse=False)

    def _start(self) -> _Connection:
        if self._started or self._conn is None:
            raise httpx.StreamConsumed()
        self._started = True
        return self._conn

    def _finish(self, *, reuse: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if reuse:
            self._client.release(conn)
        else:
            conn.close()


class Http1Client:
    """Requests to one origin, on the event loop that first uses it."""

    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float, max_idle: int = 50,
                 idle_expiry: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 max_connections: int = 256) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._max_idle, self._idle_expiry = max_idle, idle_expiry
        self._host = url.hostname
        default_port = 443 if url.scheme == "https" else 80
        self._port = url.port or default_port
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if self._port == default_port else f"{host}:{self._port}"
        self._base_path = url.path.rstrip("/") + "/"
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            if ssl_context is None:
                ssl_context = ssl.create_default_context(cafile=certifi.where())
                ssl_context.set_alpn_protocols(["http/1.1"])
            self._ssl = ssl_context
        self._idle: deque[_Connection] = deque()  # most recently used last
        self._closed = False
        self._max_connections = max(max_connections, 1)
        self._open = 0  # connections made and not yet lost, in use or idle
        self._slot_waiters: deque[asyncio.Future[None]] = deque()

    def build_request(self, method: str, path: str, *, content: bytes = b"",
                      headers: Mapping[str, str] | None = None) -> Request:
        """`path` is relative to the base URL's path unless it starts with "/"."""
        target = path if path.startswith("/") else self._base_path + path
        return Request(method, target, headers or {}, content)

    async def send(self, request: Request) -> Response:
        """Send and wait for the status and headers; the body is read from the Response."""
        payload = self._encode(request)
        deadline: float | None = None
        while True:
            conn = self._pooled()
            if conn is not None:
                try:
                    return await self._exchange(conn, payload)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    if conn.received:
                        raise
                    # nothing came back: sent into a connection the server had closed (module docstring)
            if self._open < self._max_connections:
                return await self._exchange(await self._connect(), payload)
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.connect_timeout
            await self._wait_for_slot(deadline)

    def release(self, conn: _Connection) -> None:
        """A connection whose response was read to the end: pooled if it can be reused."""
        if (self._closed or conn.closed or not conn.complete or not conn.keep_alive
                or len(self._idle) >= self._max_idle):
            conn.close()
            return
        conn.active = False
        conn.idle_since = now = time.monotonic()
        idle = self._idle
        while idle and now - idle[0].idle_since > self._idle_expiry:
            idle.popleft().close()
        idle.append(conn)
        self._slot_freed()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their response ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def _pooled(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since <= self._idle_expiry:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        self._open += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), self._host, self._port, ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None)
        except BaseException as exc:
            self._lost()
            if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
                raise httpx.ConnectTimeout(f"connecting to {self._host_header} timed out") from exc
            if isinstance(exc, OSError):
                raise httpx.ConnectError(f"could not connect to {self._host_header}: {exc}") from exc
            raise
        conn.on_lost = self._lost
        return conn

    def _lost(self) -> None:
        self._open -= 1
        self._slot_freed()

    def _slot_freed(self) -> None:
        """A connection closed or came back idle: the first caller waiting tries again."""
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _wait_for_slot(self, deadline: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:  # timed out, or the request was cancelled
            if waiter.done() and not waiter.cancelled():
                self._slot_freed()  # woken as we gave up: pass it on
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout(f"all {self._max_connections} connections to "
                                        f"{self._host_header} are in use") from exc
            raise

    async def _exchange(self, conn: _Connection, payload: bytes) -> Response:
        conn.start(payload)
        try:
            await conn.read_head(self.timeout)
        except BaseException:
            conn.close()
            raise
        assert conn.headers is not None
        return Response(self, conn, conn.headers)

    def _encode(self, request: Request) -> bytes:
        """Request line, headers and body in one buffer (one write)."""
        if not _TOKEN.fullmatch(request.method) or _BAD_VALUE.search(request.target) or " " in request.target:
            raise httpx.LocalProtocolError(f"invalid request line: {request.method} {request.target!r}")
        lines = [f"{request.method} {request.target} HTTP/1.1\r\nhost: {self._host_header}\r\n"]
        for name, value in request.headers.items():
            if name.lower() in _SET_BY_CLIENT:
                continue
            if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
                raise httpx.LocalProtocolError(f"invalid header {name!r}")
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"accept-encoding: identity\r\ncontent-length: {len(request.body)}\r\n\r\n")
        try:
            head = "".join(lines).encode("latin-1")
        except UnicodeEncodeError as exc:
            raise httpx.LocalProtocolError(f"a header is not latin-1: {exc}") from exc
        return head + request.body
