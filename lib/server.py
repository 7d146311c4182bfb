"""One local server mounting every function of `functions.ROUTES` under its path."""
from __future__ import annotations

import importlib

import flask
from werkzeug.serving import make_server, BaseWSGIServer

from functions import ROUTES

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def load_target(module: str, target: str):
    return getattr(importlib.import_module(f"functions.{module}"), target)


def create_app() -> flask.Flask:
    app = flask.Flask("tollbooth")
    for route in ROUTES:
        fn = load_target(route.module, route.target)

        def view(_fn=fn, **_params):
            return _fn(flask.request)

        app.add_url_rule(route.path, endpoint=f"{route.module}:{route.path}", view_func=view, methods=ALL_METHODS)

    @app.errorhandler(404)
    def not_found(_e):
        return flask.jsonify({"error": {"type": "not_found", "message": f"no route for {flask.request.path}"}}), 404

    return app


def build_server(host: str, port: int) -> BaseWSGIServer:
    """In-process threaded server (tests, `make dev`): simple, one request per connection."""
    return make_server(host, port, create_app(), threaded=True)


def serve_production(host: str, port: int, workers: int, threads: int) -> None:
    """Pre-forked gunicorn workers with thread pools and keep-alive (`tollbooth serve`)."""
    serve_wsgi(create_app, host, port, workers=workers, threads=threads)


def serve_wsgi(app_or_factory, host: str, port: int, *, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("keepalive", 30)
            self.cfg.set("timeout", 0)  # streams may run long; upstream timeouts bound them
            self.cfg.set("accesslog", None)
            self.cfg.set("loglevel", "warning")

        def load(self):
            return app_or_factory() if app_or_factory is create_app else app_or_factory

    Server().run()
