"""One WSGI app (and server) mounting many functions, each under its own path.

Which function serves which path is the caller's to say (`functions.ROUTES`, read by
the CLI, the composition root): this module knows nothing of `functions/`.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import flask
from werkzeug.serving import BaseWSGIServer, make_server

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True)
class Mount:
    path: str  # flask rule syntax for path parameters
    name: str
    handler: Callable[[flask.Request], flask.Response]


def create_app(mounts: Iterable[Mount]) -> flask.Flask:
    app = flask.Flask("tollbooth")
    for mount in mounts:
        def view(_fn: Callable[[flask.Request], flask.Response] = mount.handler, **_params: Any) -> flask.Response:
            return _fn(flask.request)

        app.add_url_rule(mount.path, endpoint=f"{mount.name}:{mount.path}", view_func=view, methods=ALL_METHODS)

    @app.errorhandler(404)
    def not_found(_e: Exception) -> tuple[flask.Response, int]:
        return flask.jsonify({"error": {"type": "not_found", "message": f"no route for {flask.request.path}"}}), 404

    return app


def build_server(host: str, port: int, mounts: Iterable[Mount]) -> BaseWSGIServer:
    """In-process threaded server (tests, `make dev`): simple, one request per connection."""
    return make_server(host, port, create_app(mounts), threaded=True)


_HTTP_ERROR_TYPES = {400: "invalid_request_error", 403: "permission_error", 414: "request_uri_too_long",
                     417: "expectation_failed", 431: "request_headers_too_large", 500: "internal_error",
                     501: "not_implemented"}


def json_error_bytes(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response in our JSON error shape."""
    body = json.dumps({"error": {"type": _HTTP_ERROR_TYPES.get(status, "invalid_request_error"),
                                 "message": message[:300] or reason}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    return head + body


def _json_write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    from gunicorn import util

    util.write_nonblock(sock, json_error_bytes(int(status_int), str(reason), str(mesg)))


def serve_wsgi(app_factory: Callable[[], Any], host: str, port: int, *, workers: int, threads: int) -> None:
    """Pre-forked gunicorn workers with thread pools and keep-alive; each worker builds
    its app with `app_factory`. Requests gunicorn itself refuses (malformed or
    oversized request line or headers) are answered in our JSON error shape too."""
    from gunicorn import util
    from gunicorn.app.base import BaseApplication

    util.write_error = _json_write_error  # gunicorn's workers call util.write_error

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("keepalive", 30)
            self.cfg.set("timeout", 0)  # streams may run long; upstream timeouts bound them
            self.cfg.set("accesslog", None)
            self.cfg.set("loglevel", "warning")

        def load(self) -> Any:
            return app_factory()

    Server().run()
