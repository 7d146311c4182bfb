"""The async function runtime: an async HTTP function is `async fn(request) -> Response`
(functions-framework's `aio` signature, a starlette.Request), wrapped by
`async_endpoint`, which gives it what lib.core.http's `endpoint` gives a flask function:
our own request id, the header checks, one structured access log line and the one
mapping from `TollboothError` to `{"error": {"type", "message"}}` (lib.core.errors).

A domain module answers a `Reply` (lib.core.http); `reply_response` sends it, and a
streamed body is an async iterator: when the client goes away mid-stream the iterator
is closed (`aclose`, GeneratorExit at its `yield`), so its owner can still finish its
work (drain, settle) without sending.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from lib.core.config import get_settings
from lib.core.errors import BadRequest, MethodNotAllowed, PayloadTooLarge, TollboothError
from lib.core.http import Reply, check_header_items, decode_json_object, validate
from lib.core.log import get_logger, log_fields, request_id_var

log = get_logger("http")
AsyncHandler = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, default=str), status_code=status, headers=headers,
                    media_type="application/json")


def error_response(err: TollboothError) -> Response:
    return json_response(err.body(), err.status, err.headers)


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 beyond MAX_BODY_BYTES (before reading it when the
    client said its length; while it arrives when not)."""
    limit = get_settings().max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest("content-length must be a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object within every limit, or a 4xx TollboothError."""
    return decode_json_object(await read_body(request))


async def parse_json(request: Request, model: type[M]) -> M:
    return validate(await parse_json_object(request), model)


def require_method(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise MethodNotAllowed(f"method {request.method} not allowed; use {', '.join(methods)}",
                               headers={"Allow": ", ".join(methods)})


class StreamReply(Response):
    """A streamed body relayed as it comes; a client that goes away closes the iterator
    (which then finishes its own work) instead of cancelling it."""

    def __init__(self, body: AsyncIterator[bytes], status: int, headers: dict[str, str], media_type: str):
        # as starlette's StreamingResponse: no body attribute, so no content-length
        self.status_code, self.media_type, self.background = status, media_type, None
        self.body_iterator = body
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        body = self.body_iterator
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in body:
                if gone.is_set():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if gone.is_set():
                    break
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away under the write: the body's owner finishes below
        finally:
            watcher.cancel()
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                # shielded: a cancelled request (server shutting down) still lets it finish
                await asyncio.shield(aclose())


def reply_response(reply: Reply) -> Response:
    if isinstance(reply.body, bytes):
        return Response(reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type)
    if hasattr(reply.body, "__aiter__"):
        return StreamReply(reply.body, reply.status, reply.headers, reply.media_type)  # type: ignore[arg-type]
    raise TypeError("an async handler's Reply streams an async iterator")


def async_endpoint(name: str) -> Callable[[AsyncHandler], AsyncHandler]:
    """Wrap an async function: request id, header checks, error mapping, one access log."""

    def wrap(fn: AsyncHandler) -> AsyncHandler:
        @functools.wraps(fn)
        async def handler(request: Request) -> Response:
            # always our own id: it keys reservations and usage rows, so a client cannot pick it
            rid = f"req_{uuid.uuid4().hex}"
            request_id_var.set(rid)  # this request's task's context: streamed bodies keep it
            start = time.perf_counter()
            try:
                check_header_items(request.headers.items())
                resp = await fn(request)
            except TollboothError as err:
                resp = error_response(err)
            except Exception:
                log.exception("unhandled error in %s", name)
                resp = error_response(TollboothError("internal error"))
            resp.headers.setdefault("x-request-id", rid)
            if log.isEnabledFor(logging.INFO):
                log_fields(log, logging.INFO, "request", function=name, method=request.method,
                           path=request.url.path, status=resp.status_code,
                           ms=round((time.perf_counter() - start) * 1000, 2))
            return resp

        handler.endpoint_name = name  # type: ignore[attr-defined]
        return handler

    return wrap


_shutdown_hooks: list[Callable[[], Awaitable[None]]] = []


def on_shutdown(hook: Callable[[], Awaitable[None]]) -> None:
    """Run `hook` in each ASGI app's loop when it shuts down (pools, clients)."""
    if hook not in _shutdown_hooks:
        _shutdown_hooks.append(hook)


async def run_shutdown_hooks() -> None:
    from lib.core.db_async import close_async_database

    for hook in [*_shutdown_hooks, close_async_database]:  # hooks may still use the database
        try:
            await hook()
        except Exception:
            log.exception("shutdown hook failed")


def make_asgi_app(handler: AsyncHandler) -> Starlette:
    """An ASGI app that sends every path to one async function (Vercel's `app` export)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await run_shutdown_hooks()

    return Starlette(routes=[Route("/", handler, methods=ALL_METHODS),
                             Route("/{path:path}", handler, methods=ALL_METHODS)], lifespan=lifespan)
