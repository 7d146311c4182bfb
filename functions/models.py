"""GET /v1/models: the models the caller (API key or Supabase JWT, as for chat) may call
on its organization's plan, in OpenAI's list shape with our prices as extra fields.

Authenticate -> one database call (public.list_models_for_caller) -> respond.
"""
from __future__ import annotations

import flask
import functions_framework

from lib.chat.metering import authenticate, begin_error
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.errors import TollboothError
from lib.core.http import endpoint, json_response, make_app, require_method


@functions_framework.http
@endpoint("models")
def models(request: flask.Request) -> flask.Response:
    require_method(request, "GET")
    caller = authenticate(request.headers, get_settings())
    db = get_database()
    try:
        data = db.rpc("list_models_for_caller", {
            "key_hash": caller.key_hash, "user_id": caller.user_id, "org_id": caller.org_id})
    except TollboothError as err:
        begin_error(db, caller, err)  # invalid_api_key, trial_expired, ... as for chat
        raise
    return json_response({"object": "list", "data": data or []})


app = make_app(models)
