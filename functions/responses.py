"""POST /v1/responses: the metered Responses API (streaming and not; Codex-style clients
speak only this).

Authenticate (API key or Supabase JWT) -> validate -> reserve the worst case
(begin_chat_request, kind 'responses', with every per-key control; no max_output_tokens:
what the balance affords, sent upstream) -> forward -> settle the usage of the answer or
of its `response.completed` event -> relay.
"""
from __future__ import annotations

import time

import flask
import functions_framework

from lib.chat.endpoints import ResponsesBody, responses_token_bound, responses_usage
from lib.chat.forward import forward
from lib.chat.metering import Usage, authenticate, begin
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, make_app, parse_json_object, reply_response, require_method, validate
from lib.core.log import request_id_var


@functions_framework.http
@endpoint("responses")
def responses(request: flask.Request) -> flask.Response:
    started = time.perf_counter()
    require_method(request, "POST")
    settings = get_settings()
    settings.require("openai_api_key")  # before anything is reserved
    caller = authenticate(request.headers, settings)
    raw = parse_json_object(request)
    body = validate(raw, ResponsesBody)
    bound = responses_token_bound(raw)
    db = get_database()
    metered = begin(db, caller, body, raw, request_id=request_id_var.get() or "", endpoint=request.path,
                    headers=request.headers, started=started, lease_seconds=settings.reservation_lease_seconds,
                    peer=request.remote_addr, trusted_proxies=settings.trusted_proxy_cidrs, kind="responses",
                    prompt_bound=bound)
    upstream = dict(raw)
    if metered.grant.limit_capped:
        upstream["max_output_tokens"] = metered.grant.completion_tokens_limit
    reply = forward(db, settings, metered, "responses", upstream, responses_usage,
                    lambda deltas: Usage(prompt_tokens=-(-bound // 4), completion_tokens=deltas),
                    request.headers.get("user-agent"))
    reply.headers.update(metered.grant.ratelimit or {})
    return reply_response(reply)


app = make_app(responses)
