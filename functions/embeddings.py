"""POST /v1/embeddings: metered embeddings (priced per input token).

Authenticate (API key or Supabase JWT) -> validate -> reserve the input's worst case
(begin_chat_request, kind 'embeddings', with every per-key control) -> forward upstream
-> settle the real usage -> relay the answer.
"""
from __future__ import annotations

import time

import flask
import functions_framework

from lib.chat.endpoints import EmbeddingsBody, embeddings_token_bound, embeddings_usage
from lib.chat.forward import forward
from lib.chat.metering import Usage, authenticate, begin
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, make_app, parse_json_object, reply_response, require_method, validate
from lib.core.log import request_id_var


@functions_framework.http
@endpoint("embeddings")
def embeddings(request: flask.Request) -> flask.Response:
    started = time.perf_counter()
    require_method(request, "POST")
    settings = get_settings()
    settings.require("openai_api_key")  # before anything is reserved
    caller = authenticate(request.headers, settings)
    raw = parse_json_object(request)
    body = validate(raw, EmbeddingsBody)
    bound = embeddings_token_bound(body)
    db = get_database()
    metered = begin(db, caller, body, raw, request_id=request_id_var.get() or "", endpoint=request.path,
                    headers=request.headers, started=started, lease_seconds=settings.reservation_lease_seconds,
                    peer=request.remote_addr, trusted_proxies=settings.trusted_proxy_cidrs, kind="embeddings",
                    prompt_bound=bound)
    reply = forward(db, settings, metered, "embeddings", raw, embeddings_usage,
                    lambda _: Usage(prompt_tokens=-(-bound // 4), completion_tokens=0),
                    request.headers.get("user-agent"))
    reply.headers.update(metered.grant.ratelimit or {})
    return reply_response(reply)


app = make_app(embeddings)
