"""GET /v1/usage: the calling API key's own usage and what is left (OpenRouter's
`/key`), with the key itself as `Authorization: Bearer <key>`; never another key's.

Hash the key -> one database call (usage_for_key, which checks it) -> respond.
"""
from __future__ import annotations

import flask
import functions_framework

from lib.core.auth import bearer_token, looks_like_jwt
from lib.core.crypto import hash_api_key
from lib.core.db import get_database
from lib.core.errors import Unauthorized
from lib.core.http import endpoint, json_response, make_app, require_method


@functions_framework.http
@endpoint("key_usage")
def key_usage(request: flask.Request) -> flask.Response:
    require_method(request, "GET")
    token = bearer_token(request.headers.get("Authorization"))
    if looks_like_jwt(token):
        raise Unauthorized("GET /v1/usage takes an API key, not a user token", type="invalid_api_key")
    try:
        data = get_database().rpc("usage_for_key", {"key_hash": hash_api_key(token)})
    except Unauthorized as err:
        err.type = "invalid_api_key"
        raise
    return json_response({"data": data})


app = make_app(key_usage)
