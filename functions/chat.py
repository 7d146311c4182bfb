"""POST /v1/chat/completions (alias /api/chat): the metered, OpenAI-compatible chat proxy.

Authenticate (API key or Supabase JWT) -> validate the body -> reserve the worst
case (one database call) -> forward upstream -> settle the real usage (one database
call) -> relay the answer. Async (functions-framework's `aio`, Starlette): a slow
client or a long stream holds a coroutine, never a thread.
"""
from __future__ import annotations

import time

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from lib.chat.metering import ChatBody, authenticate, begin, lane_of, remember_lane
from lib.chat.proxy import proxy
from lib.chat.replay import call_async
from lib.chat.settlement import close_journals
from lib.chat.token_bounds import prompt_token_bound
from lib.chat.upstream import close_async_clients
from lib.core.asgi import async_endpoint, make_asgi_app, on_shutdown, parse_json_object, reply_response, require_method
from lib.core.config import get_settings
from lib.core.db_async import InLane, get_async_database
from lib.core.http import validate
from lib.core.log import request_id_var


@async_endpoint("chat")
async def chat(request: Request) -> Response:
    started = time.perf_counter()
    require_method(request, "POST")
    settings = get_settings()
    settings.require("openai_api_key")  # before anything is reserved
    caller = authenticate(request.headers, settings)
    raw = await parse_json_object(request)
    body = validate(raw, ChatBody)
    db = get_async_database()
    peer = request.client.host if request.client else None
    metered = await call_async(begin, InLane(db, lane_of(caller)), caller, body, raw,
                               request_id=request_id_var.get() or "", endpoint=request.url.path,
                               headers=request.headers, started=started,
                               lease_seconds=settings.reservation_lease_seconds,
                               peer=peer, trusted_proxies=settings.trusted_proxy_cidrs,
                               prompt_bound=prompt_token_bound(raw))  # once, not once per replay
    remember_lane(caller, metered)
    reply = await proxy(db, settings, metered, request.headers.get("user-agent"))
    reply.headers.update(metered.grant.ratelimit or {})  # a key's rpm/tpm window, as OpenAI reports it
    return reply_response(reply)


functions_framework.aio.http(chat)  # registers it: `functions-framework --target chat --asgi`
on_shutdown(close_journals)
on_shutdown(close_async_clients)
app = make_asgi_app(chat)
