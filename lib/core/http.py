"""The function runtime: every HTTP function is a plain `fn(request) -> Response`
(functions-framework's signature, a flask.Request), wrapped by `endpoint`, which gives
it a request id, a structured access log, and the one mapping from `TollboothError`
(and pydantic validation errors) to `{"error": {"type", "message"}}` responses.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from lib.core.config import get_settings
from lib.core.errors import BadRequest, HeadersTooLarge, MethodNotAllowed, PayloadTooLarge, TollboothError
from lib.core.log import get_logger, log_fields, request_id_var

log = get_logger("http")
Handler = Callable[[flask.Request], flask.Response]
M = TypeVar("M", bound=BaseModel)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    resp = flask.Response(json.dumps(body, default=str), status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


@dataclass(frozen=True)
class Reply:
    """An HTTP answer as domain code gives it (status, headers, bytes or a stream of
    them); `reply_response` turns it into the framework's response."""

    status: int
    headers: dict[str, str]
    body: bytes | Iterator[bytes] | AsyncIterator[bytes]
    media_type: str = "application/json"


def reply_response(reply: Reply) -> flask.Response:
    if hasattr(reply.body, "__aiter__"):
        raise TypeError("a flask handler's Reply streams a sync iterator")
    return flask.Response(reply.body, status=reply.status, mimetype=reply.media_type, headers=reply.headers)


def error_response(err: TollboothError) -> flask.Response:
    return json_response(err.body(), err.status, err.headers)


def validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg')}")
    return "; ".join(parts)


MAX_JSON_DEPTH = 64
BIGINT_MAX = 2**63 - 1
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_json_values(data: Any) -> None:
    """Refuse what no handler or database column can take, wherever it is in the body:
    nesting deeper than MAX_JSON_DEPTH, NUL characters or lone surrogates in any string
    or key, integers outside Postgres bigint, non-finite numbers."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest(f"body is nested deeper than {MAX_JSON_DEPTH} levels")
            for k, v in value.items():
                if _BAD_TEXT.search(k):
                    raise BadRequest("body contains a NUL character or a lone surrogate")
                stack.append((v, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest(f"body is nested deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            if _BAD_TEXT.search(value):
                raise BadRequest("body contains a NUL character or a lone surrogate")
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not -BIGINT_MAX - 1 <= value <= BIGINT_MAX:
                raise BadRequest("body contains an integer out of range (beyond 64 bits)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise BadRequest("body contains a number out of range")


def max_body_bytes() -> int:
    return get_settings().max_body_bytes


def read_body(request: flask.Request) -> bytes:
    """The raw body, refused with 413 beyond MAX_BODY_BYTES (before reading it when the
    client said its length; while reading it when not)."""
    limit = max_body_bytes()
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    try:
        if request.content_length is not None:
            request.max_content_length = limit
            return request.get_data(cache=True)
        request.max_content_length = limit + 1
        data = request.stream.read(limit + 1)  # chunked: count what arrives
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes") from exc
    if len(data) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    request._cached_data = data  # so that request.get_data() still answers it
    return data


def parse_json_object(request: flask.Request) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest (413 past the size limit)."""
    return decode_json_object(read_body(request))


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Body bytes as a JSON object within every limit of `check_json_values`, or BadRequest."""
    try:
        data = json.loads(raw, parse_constant=_no_constants) if raw else None
    except RecursionError as exc:
        raise BadRequest(f"body is nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    check_json_values(data)
    return data


MAX_HEADER_BYTES = 32 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f]")  # control characters but tab


def check_headers(request: flask.Request) -> None:
    """Headers our server let through but no handler should see: NUL or other control
    characters in a value (400), more than MAX_HEADER_BYTES in all (431)."""
    check_header_items(request.headers.items())


def check_header_items(items: Iterable[tuple[str, str]]) -> None:
    """`check_headers` for any framework's (name, value) pairs."""
    total = 0
    for name, value in items:
        total += len(name) + len(value) + 4
        if _CONTROL.search(value):
            raise BadRequest(f"header {name[:64]} contains a control character")
    if total > MAX_HEADER_BYTES:
        raise HeadersTooLarge(f"request headers are larger than {MAX_HEADER_BYTES} bytes")


def validate(data: dict[str, Any], model: type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from exc


def parse_json(request: flask.Request, model: type[M]) -> M:
    """The request body as `model`, or BadRequest naming what is wrong."""
    return validate(parse_json_object(request), model)


def path_uuid(request: flask.Request, after: str) -> uuid.UUID:
    """The UUID in the path segment right after the segment `after` (`/api/rooms/<id>/state`
    with after="rooms"): read from the path itself, so it works behind Vercel's rewrites too."""
    parts = request.path.strip("/").split("/")
    try:
        raw = parts[parts.index(after) + 1]
    except (ValueError, IndexError) as exc:
        raise BadRequest(f"the path must name a {after} id") from exc
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise BadRequest(f"{raw!r} in the path is not a UUID") from exc


def require_method(request: flask.Request, *methods: str) -> None:
    if request.method not in methods:
        raise MethodNotAllowed(f"method {request.method} not allowed; use {', '.join(methods)}",
                               headers={"Allow": ", ".join(methods)})


def endpoint(name: str) -> Callable[[Handler], Handler]:
    """Wrap a function: request id, error mapping, one access log line."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        def handler(request: flask.Request) -> flask.Response:
            # always our own id: it keys reservations and usage rows, so a client cannot pick it
            rid = f"req_{uuid.uuid4().hex}"
            token = request_id_var.set(rid)
            start = time.perf_counter()
            try:
                try:
                    check_headers(request)
                    resp = fn(request)
                except TollboothError as err:
                    resp = error_response(err)
                except Exception:
                    log.exception("unhandled error in %s", name)
                    resp = error_response(TollboothError("internal error"))
                resp.headers.setdefault("x-request-id", rid)
                log_fields(log, logging.INFO, "request", function=name, method=request.method,
                           path=request.path, status=resp.status_code,
                           ms=round((time.perf_counter() - start) * 1000, 2))
                return resp
            finally:
                request_id_var.reset(token)

        handler.endpoint_name = name  # type: ignore[attr-defined]
        return handler

    return wrap


def make_app(handler: Callable[[flask.Request], Any]) -> flask.Flask:
    """A WSGI app that sends every path to one function (Vercel's `app` export)."""
    app = flask.Flask(handler.__module__)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    def dispatch(path: str) -> Any:
        return handler(flask.request)

    return app
