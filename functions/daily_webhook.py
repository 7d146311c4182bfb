"""POST /api/daily/webhook: Daily's events, verified (X-Webhook-Signature over
timestamp + "." + raw body, X-Webhook-Timestamp within the tolerance; 400 and nothing
written otherwise), parsed, and stored then applied in one SQL transaction. Daily's
endpoint check `{"test": "test"}` answers 200. Duplicates, unknown rooms and payloads
we cannot read answer 200 too: Daily switches the webhook off after three failures."""
from __future__ import annotations

import json

import flask
import functions_framework

from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, json_response, make_app, require_method
from lib.meetings.events import apply_event, parse_event
from lib.meetings.signature import verify


@functions_framework.http
@endpoint("daily_webhook")
def daily_webhook(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    raw = request.get_data(cache=True)
    verify(raw, request.headers.get("X-Webhook-Signature"), request.headers.get("X-Webhook-Timestamp"),
           get_settings().require("daily_webhook_secret"))
    event = parse_event(raw)
    if event is None:
        return json_response({"ok": True, "test": True})
    return json_response(apply_event(get_database(), event, json.loads(raw)))


app = make_app(daily_webhook)
