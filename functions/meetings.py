"""POST /api/meetings: an org member creates a Daily room within the plan's limits and
its meeting (scheduled). POST /api/meetings/<meeting_id>/cancel: its creator or an org
admin deletes the room at Daily and marks it cancelled. Supabase JWT; Daily failures
are 502 carrying Daily's message (504 on timeout) and store nothing."""
from __future__ import annotations

import flask
import functions_framework

from lib.core.auth import signed_in_user
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, json_response, make_app, parse_json, path_uuid, require_method
from lib.meetings.daily_api import make_client
from lib.meetings.rooms import CreateMeeting, cancel_meeting, create_meeting


@functions_framework.http
@endpoint("meetings")
def meetings(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    settings = get_settings()
    daily = make_client(settings)  # 503 naming DAILY_API_KEY before anything else
    user = signed_in_user(request.headers.get("Authorization"), settings)
    if request.path.rstrip("/").endswith("/cancel"):
        return json_response(cancel_meeting(get_database(), daily, user.user_id, path_uuid(request, "meetings")))
    body = parse_json(request, CreateMeeting)
    return json_response(create_meeting(get_database(), daily, user.user_id, body), status=201)


app = make_app(meetings)
