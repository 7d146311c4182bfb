"""GET /api/health: liveness plus database reachability (200, or 503 when unreachable)."""
from __future__ import annotations

import flask
import functions_framework

from lib.core.db import get_database
from lib.core.errors import MissingSetting, TollboothError
from lib.core.http import endpoint, json_response, make_app, require_method


@functions_framework.http
@endpoint("health")
def health(request: flask.Request) -> flask.Response:
    require_method(request, "GET", "HEAD")
    try:
        get_database().ping()
    except MissingSetting:
        raise
    except TollboothError as err:
        return json_response({"status": "degraded", "database": "unreachable", "error": err.message}, 503)
    return json_response({"status": "ok", "database": "reachable"})


app = make_app(health)
