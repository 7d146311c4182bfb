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
    return make_server(host, port, create_app(), threaded=True)
