"""POST /v1/chat/completions (alias /api/chat): the metered, OpenAI-compatible chat proxy.

Authenticate (`xan_…` key or Supabase JWT) -> validate the body -> reserve the worst
case (one database call) -> forward upstream -> settle the real usage (one database
call) -> relay the answer.
"""
from __future__ import annotations

import json

import flask
import functions_framework

from lib.chat_metering import ChatBody, authenticate, begin
from lib.chat_proxy import proxy
from lib.config import get_settings
from lib.db import get_database
from lib.http import endpoint, make_app, parse_json, require_method
from lib.log import request_id_var


@functions_framework.http
@endpoint("chat")
def chat(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    settings = get_settings()
    settings.require("openai_api_key")  # before anything is reserved
    caller = authenticate(request, settings)
    body = parse_json(request, ChatBody)
    raw = json.loads(request.get_data(cache=True))
    db = get_database()
    metered = begin(db, caller, body, raw, request_id=request_id_var.get(), endpoint=request.path, request=request)
    return proxy(db, settings, metered, request.headers.get("user-agent"))


app = make_app(chat)
