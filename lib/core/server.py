"""One server mounting every function, each under its own path: an ASGI app (Starlette)
that serves the async functions natively and the flask (WSGI) ones through a thread
pool adapter, on uvicorn (uvloop and httptools when installed).

Which function serves which path is the caller's to say (`functions.ROUTES`, read by
the CLI, the composition root): this module knows nothing of `functions/`. The HTTP
server's own refusals (malformed or oversized request line or headers, headers that
never finish arriving) are answered in our JSON error shape too.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import re
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute, Route
from starlette.routing import Mount as StarletteMount
from starlette.types import Receive, Scope, Send

from lib.core.coalesce import CoalescingTransport

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# the request line and headers together; past this, 431 before any handler runs
MAX_REQUEST_HEAD_BYTES = 64 * 1024
# a request whose headers have not all arrived this long after its first byte is dropped (408)
HEADER_TIMEOUT_SECONDS = 30.0
WSGI_THREADS = 16


@dataclass(frozen=True)
class Mount:
    path: str  # flask rule syntax for path parameters
    name: str
    handler: Callable[..., Any]  # fn(flask.Request) -> flask.Response, or async fn(starlette.Request)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)


def create_app(mounts: Iterable[Mount]) -> flask.Flask:
    """The WSGI app of the flask functions among `mounts`."""
    app = flask.Flask("tollbooth")
    for mount in mounts:
        if mount.is_async:
            continue

        def view(_fn: Callable[[flask.Request], flask.Response] = mount.handler, **_params: Any) -> flask.Response:
            return _fn(flask.request)

        app.add_url_rule(mount.path, endpoint=f"{mount.name}:{mount.path}", view_func=view, methods=ALL_METHODS)

    @app.errorhandler(404)
    def not_found(_e: Exception) -> tuple[flask.Response, int]:
        return flask.jsonify({"error": {"type": "not_found", "message": f"no route for {flask.request.path}"}}), 404

    return app


def create_asgi_app(mounts: Iterable[Mount], *, wsgi_threads: int = WSGI_THREADS) -> ExactPaths:
    """Every function on one ASGI app: async ones on a path without parameters (the chat
    proxy's) straight from the path, other async ones routed by Starlette, the rest (and
    every path no route claims: our JSON 404) through the WSGI adapter."""
    from a2wsgi import WSGIMiddleware

    from lib.core.asgi import run_shutdown_hooks

    mounts = list(mounts)
    routes: list[BaseRoute] = [
        Route(re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", m.path), m.handler, methods=ALL_METHODS, name=m.name)
        for m in mounts if m.is_async
    ]
    routes.append(StarletteMount("/", app=WSGIMiddleware(create_app(mounts), workers=wsgi_threads)))  # type: ignore[arg-type]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await run_shutdown_hooks()

    exact = {m.path: m.handler for m in mounts if m.is_async and "<" not in m.path}
    return ExactPaths(exact, Starlette(routes=routes, lifespan=lifespan))


class ExactPaths:
    """ASGI: an HTTP request for one of `handlers`' exact paths goes straight to its async
    handler (wrapped by lib.core.asgi.async_endpoint, which answers every error itself);
    everything else (lifespan, other paths) to `fallback`. The hot path skips Starlette's
    middleware stack and route matching, which cost more CPU than the handler's own
    Python on a metered call."""

    def __init__(self, handlers: dict[str, Callable[[Request], Awaitable[Any]]], fallback: Starlette):
        self.handlers, self.fallback = handlers, fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.handlers.get(scope["path"])
            if handler is not None:
                if "app" not in scope:
                    scope["app"] = self.fallback
                response = await handler(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.fallback(scope, receive, send)


_HTTP_ERROR_TYPES = {400: "invalid_request_error", 403: "permission_error", 408: "request_timeout",
                     414: "request_uri_too_long", 417: "expectation_failed", 431: "request_headers_too_large",
                     500: "internal_error", 501: "not_implemented"}


def json_error_bytes(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response in our JSON error shape."""
    body = json.dumps({"error": {"type": _HTTP_ERROR_TYPES.get(status, "invalid_request_error"),
                                 "message": message[:300] or reason}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    return head + body


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol
except ImportError:  # pragma: no cover (httptools is a dependency)
    from uvicorn.protocols.http.h11_impl import H11Protocol as _BaseProtocol  # type: ignore[assignment]


class JsonErrorsProtocol(_BaseProtocol):
    """uvicorn's httptools protocol (h11's without httptools), answering its own
    refusals as JSON, bounding the request head and how long it may take to arrive.
    Module level: uvicorn's worker processes unpickle it by name."""

    _head_bytes = 0
    _head_status = 400
    _in_head = True
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # a response's headers and body in one send (flow control stays on the transport)
        self.transport = CoalescingTransport(transport)  # type: ignore[assignment]  # stands in for it
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_timer = asyncio.get_running_loop().call_later(HEADER_TIMEOUT_SECONDS, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.write(json_error_bytes(408, "Request Timeout", "the request headers took too long"))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > 16 * MAX_REQUEST_HEAD_BYTES:  # one header trickled without end
                self._head_status = 431
                self.send_400_response("")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._head_status = 0, 400
        if not self._in_head:
            self._arm()

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
            self._head_status = 431
            raise ValueError("request head too large")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._head_status == 431:
            out = json_error_bytes(431, "Request Header Fields Too Large",
                                   f"request line and headers are larger than {MAX_REQUEST_HEAD_BYTES} bytes")
        else:
            out = json_error_bytes(400, "Bad Request", "malformed HTTP request line or headers")
        self._disarm()
        self.transport.write(out)
        self.transport.close()


def uvicorn_config(app: Any, host: str, port: int, **kw: Any) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=JsonErrorsProtocol, loop="auto", lifespan="on",
                          log_level="warning", access_log=False, timeout_keep_alive=30,
                          h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
                          # the client address is the socket's: X-Forwarded-For is believed only
                          # from TRUSTED_PROXY_CIDRS (lib.chat.client_ip), never by uvicorn itself
                          proxy_headers=False, **kw)


class ThreadedServer:
    """uvicorn serving `app` on an already bound socket, in a thread or in the foreground
    (tests, `make dev`): the same app and protocol as `tollbooth serve`, one process."""

    def __init__(self, host: str, port: int, app: Any):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.server_port: int = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(app, host, self.server_port))
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self._thread = threading.Thread(target=self.serve_forever, name="tollbooth-server", daemon=True)
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.01)):
            if self.server.started or not self._thread.is_alive():
                break
            deadline.wait(0.01)
        if not self.server.started:
            raise RuntimeError("the server did not start")
        return self

    def shutdown(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()


def build_server(host: str, port: int, mounts: Iterable[Mount]) -> ThreadedServer:
    """The in-process server (tests, `make dev`): every function on one ASGI app."""
    return ThreadedServer(host, port, create_asgi_app(mounts))


def serve_asgi(app_factory: str, host: str, port: int, *, workers: int) -> None:
    """`workers` uvicorn processes, each building its app with the factory named by the
    import string `app_factory` ("module:function")."""
    import uvicorn

    config = uvicorn_config(app_factory, host, port, factory=True, workers=workers)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind `tollbooth serve` runs on: uvloop's when installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
