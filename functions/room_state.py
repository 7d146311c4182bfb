"""GET/PUT /api/rooms/<meeting_id>/state: a meeting's room state for members of its
organization (Supabase JWT). Sensitive fields (`secrets`) are sealed with AES-GCM
(ROOMS_ENCRYPTION_KEYS) before they are stored and unsealed on the way out; one that
fails its integrity check answers 409."""
from __future__ import annotations

import flask
import functions_framework

from lib.core.auth import signed_in_user
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, json_response, make_app, parse_json, path_uuid, require_method
from lib.meetings.room_state import RoomStateBody, get_state, keyring, put_state


@functions_framework.http
@endpoint("room_state")
def room_state(request: flask.Request) -> flask.Response:
    require_method(request, "GET", "PUT")
    settings = get_settings()
    ring = keyring(settings)  # 503 naming ROOMS_ENCRYPTION_KEYS before anything else
    user = signed_in_user(request.headers.get("Authorization"), settings)
    meeting_id = path_uuid(request, "rooms")
    if request.method == "GET":
        return json_response(get_state(get_database(), ring, user.user_id, meeting_id))
    body = parse_json(request, RoomStateBody)
    return json_response(put_state(get_database(), ring, user.user_id, meeting_id, body))


app = make_app(room_state)
