"""GET /v1/models: the models the caller (API key or Supabase JWT, as for chat) may call
on its organization's plan, in OpenAI's list shape with our prices as extra fields.

Authenticate -> one database call (public.list_models_for_caller) -> respond.
"""
from __future__ import annotations

import flask
import functions_framework

from lib.chat.metering import authenticate
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.errors import Unauthorized
from lib.core.http import endpoint, json_response, make_app, require_method


@functions_framework.http
@endpoint("models")
def models(request: flask.Request) -> flask.Response:
    require_method(request, "GET")
    caller = authenticate(request.headers, get_settings())
    try:
        data = get_database().rpc("list_models_for_caller", {
            "key_hash": caller.key_hash, "user_id": caller.user_id, "org_id": caller.org_id})
    except Unauthorized as err:
        if caller.key_hash is not None:
            err.type = "invalid_api_key"  # OpenAI's code for a key it does not know
        raise
    return json_response({"object": "list", "data": data or []})


app = make_app(models)
