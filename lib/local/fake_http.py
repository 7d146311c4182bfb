"""A lean HTTP/1.1 server for the local fakes: one asyncio event loop (uvloop when
installed), httptools' parser, keep-alive, TCP_NODELAY, and every answer written in one
send. The fakes stand in for a provider in tests and benchmarks, so they must not eat the
CPU being measured: a thread-pool WSGI server (gunicorn's gthread, werkzeug's) spent
0.4-0.6 ms of CPU per answer on two thread hand-offs; this spends about 0.05.

A handler turns a `FakeRequest` into a `FakeReply`: a body sent whole (with
content-length), or a stream of byte chunks (chunked encoding), `Pause`s between them and
a `Cut` that ends the connection, cleanly (the body ends normally) or not (the peer sees
the body break off; before the first chunk, no answer at all). Handlers run in the event
loop: they must not block (delays are `FakeReply.delay` and `Pause`).
"""
from __future__ import annotations

import asyncio
import http
import json
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httptools

from lib.core.server import json_error_bytes, new_event_loop

MAX_BODY = 64 * 1024 * 1024


@dataclass
class FakeRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True)
class Pause:
    """Wait this long before the next chunk."""

    seconds: float


@dataclass(frozen=True)
class Cut:
    """End the connection here: `clean` ends the chunked body first."""

    clean: bool = False


StreamItem = bytes | Pause | Cut


@dataclass
class FakeReply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = b""
    stream: Iterable[StreamItem] | None = None  # instead of body
    delay: float = 0.0  # seconds before the answer starts


def json_reply(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> FakeReply:
    return FakeReply(status, {"content-type": "application/json", **(headers or {})}, json.dumps(payload).encode())


def _head(status: int, headers: dict[str, str], extra: str) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


class _Connection(asyncio.Protocol):
    def __init__(self, server: FakeHttpServer):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[tuple[FakeRequest, bool]] = deque()
        self.worker: asyncio.Task[None] | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0

    # the connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's is no subclass)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.worker is not None:
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._refuse(400, "malformed HTTP request")

    def _refuse(self, status: int, message: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(json_error_bytes(status, http.HTTPStatus(status).phrase, message))
            self.transport.close()

    # httptools' callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size = b"", {}, [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._refuse(413, "request body too large")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        path = httptools.parse_url(self._url).path.decode("latin-1") if self._url else "/"
        request = FakeRequest(self.parser.get_method().decode("latin-1"), path, self._headers, b"".join(self._body))
        self.pending.append((request, self.parser.should_keep_alive()))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._serve())

    # answering, one request after another
    async def _serve(self) -> None:
        while self.pending and self.transport is not None and not self.transport.is_closing():
            request, keep_alive = self.pending.popleft()
            if not await self._answer(request, self.server.handle(request)) or not keep_alive:
                self.transport.close()
                return

    async def _answer(self, request: FakeRequest, reply: FakeReply) -> bool:
        """Send the reply; False when the connection must end."""
        transport = self.transport
        assert transport is not None
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        if transport.is_closing():
            return False
        if reply.stream is None:
            body = reply.body or b""
            transport.write(_head(reply.status, reply.headers, f"content-length: {len(body)}\r\n") + body)
            return True
        head = _head(reply.status, reply.headers, "transfer-encoding: chunked\r\n")
        for item in reply.stream:
            if isinstance(item, Pause):
                await asyncio.sleep(item.seconds)
                if transport.is_closing():
                    return False
            elif isinstance(item, Cut):
                if item.clean:
                    transport.write(head + b"0\r\n\r\n")
                return False
            elif item:
                transport.write(head + b"%x\r\n%s\r\n" % (len(item), item))
                head = b""
        transport.write(head + b"0\r\n\r\n")
        return True


class FakeHttpServer:
    """Serves `handle` on host:port, in a background thread (`start`) or in the calling one
    (`serve_forever`)."""

    def __init__(self, handle: Callable[[FakeRequest], FakeReply]):
        self.handle = handle
        self.connections: set[_Connection] = set()
        self.address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    async def _listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self._server

    async def _run(self, host: str, port: int, on_ready: Callable[[], None]) -> None:
        server = await self._listen(host, port)
        on_ready()
        try:
            await server.serve_forever()
        except asyncio.CancelledError:
            pass
        finally:
            server.close()
            self._drop_connections()

    def _drop_connections(self) -> None:
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        failure: list[BaseException] = []

        def run() -> None:
            loop = new_event_loop()
            try:
                loop.run_until_complete(self._run(host, port, self._ready.set))
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                self._ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-http", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if failure or self.address is None:
            raise RuntimeError(f"the fake server did not start: {failure[0] if failure else 'timeout'}")
        return self.address

    def serve_forever(self, host: str, port: int, on_ready: Callable[[], None] = lambda: None) -> None:
        loop = new_event_loop()
        try:
            loop.run_until_complete(self._run(host, port, on_ready))
        finally:
            loop.close()

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None and not loop.is_closed():
            def shut() -> None:
                self._drop_connections()
                for task in asyncio.all_tasks(loop):
                    task.cancel()
            loop.call_soon_threadsafe(shut)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._loop = None
