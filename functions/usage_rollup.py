"""GET/POST /api/cron/usage-rollup: the scheduled job (Vercel Cron sends
`Authorization: Bearer $CRON_SECRET`): the rollup, then the lifecycle steps; answers
their counts as JSON. 503 naming CRON_SECRET when it is not configured.

Verify the secret (constant time) -> run the jobs -> respond.
"""
from __future__ import annotations

import hmac

import flask
import functions_framework

from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.errors import Unauthorized
from lib.core.http import endpoint, json_response, make_app, require_method
from lib.usage.jobs import run_all


@functions_framework.http
@endpoint("usage_rollup")
def usage_rollup(request: flask.Request) -> flask.Response:
    require_method(request, "GET", "POST")
    settings = get_settings()
    secret = settings.require("cron_secret")
    given = request.headers.get("Authorization") or ""
    if not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
        raise Unauthorized("this route needs Authorization: Bearer <CRON_SECRET>", type="invalid_credentials")
    return json_response(run_all(get_database(), settings))


app = make_app(usage_rollup)
