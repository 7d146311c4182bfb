"""POST /v1/chat/completions (alias /api/chat): the metered, OpenAI-compatible chat proxy.

Authenticate (API key or Supabase JWT) -> validate the body -> reserve the worst
case (one database call) -> forward upstream -> settle the real usage (one database
call) -> relay the answer.
"""
from __future__ import annotations

import time

import flask
import functions_framework

from lib.chat.metering import ChatBody, authenticate, begin
from lib.chat.proxy import proxy
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, make_app, parse_json_object, reply_response, require_method, validate
from lib.core.log import request_id_var


@functions_framework.http
@endpoint("chat")
def chat(request: flask.Request) -> flask.Response:
    started = time.perf_counter()
    require_method(request, "POST")
    settings = get_settings()
    settings.require("openai_api_key")  # before anything is reserved
    caller = authenticate(request.headers, settings)
    raw = parse_json_object(request)
    body = validate(raw, ChatBody)
    db = get_database()
    metered = begin(db, caller, body, raw, request_id=request_id_var.get() or "", endpoint=request.path,
                    headers=request.headers, started=started, lease_seconds=settings.reservation_lease_seconds,
                    peer=request.remote_addr, trusted_proxies=settings.trusted_proxy_cidrs)
    reply = proxy(db, settings, metered, request.headers.get("user-agent"))
    reply.headers.update(metered.grant.ratelimit or {})  # a key's rpm/tpm window, as OpenAI reports it
    return reply_response(reply)


app = make_app(chat)
