"""The function runtime: every HTTP function is a plain `fn(request) -> Response`
(functions-framework's signature, a flask.Request), wrapped by `endpoint`, which gives
it a request id, a structured access log, and the one mapping from `TollboothError`
(and pydantic validation errors) to `{"error": {"type", "message"}}` responses.
"""
from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError

from lib.core.errors import BadRequest, MethodNotAllowed, TollboothError
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
    body: bytes | Iterator[bytes]
    media_type: str = "application/json"


def reply_response(reply: Reply) -> flask.Response:
    return flask.Response(reply.body, status=reply.status, mimetype=reply.media_type, headers=reply.headers)


def error_response(err: TollboothError) -> flask.Response:
    return json_response(err.body(), err.status, err.headers)


def validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg')}")
    return "; ".join(parts)


def parse_json_object(request: flask.Request) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest."""
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


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
