"""Forwarding a metered chat request upstream and relaying the answer, async (one
event loop serves every request; the upstream client keeps its connections alive).

Non-streaming: relay the JSON, settle from its usage. Streaming: relay SSE events as
they arrive, always asking upstream for the usage chunk and passing it on only if the
client asked; settle when the stream ends. If the client goes away mid-stream, keep
reading upstream (bounded) for the usage; without it, charge an estimate and mark the
usage row estimated. Upstream 4xx is relayed; 5xx, timeouts and connection errors
become 502/504. Every failure before output releases the reservation, before its error
is answered. A successful call's settlement is journaled and sent behind its answer
(lib.chat.settlement.settle_behind): the client does not wait for it.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, NoReturn

import httpx

from lib.chat import http1
from lib.chat.metering import Metered, Usage, UsageStatus, estimated_usage
from lib.chat.settlement import runtime, settle_async, settle_behind
from lib.chat.sse import StreamMeter, async_sse_batches
from lib.chat.upstream import async_upstream_client, chat_request
from lib.core.config import Settings
from lib.core.db_async import AsyncDatabase
from lib.core.errors import TollboothError, UpstreamError, UpstreamTimeout
from lib.core.http import Reply
from lib.core.log import get_logger

log = get_logger("chat")
RELAYED_HEADERS = ("openai-processing-ms", "openai-version", "x-ratelimit-limit-requests",
                   "x-ratelimit-remaining-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                   "retry-after")


def upstream_body(m: Metered) -> bytes:
    body = dict(m.body)
    if m.grant.limit_capped:
        body["max_completion_tokens"] = m.grant.completion_tokens_limit
    if m.stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _headers(m: Metered, remaining: int, upstream_s: float, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    total = time.perf_counter() - m.started
    headers = {
        "x-request-id": m.request_id,
        "x-credits-remaining": str(remaining),
        "x-tollbooth-overhead-ms": f"{max(total - upstream_s, 0) * 1000:.2f}",
    }
    for name in RELAYED_HEADERS:
        if extra is not None and name in extra:
            headers[name] = extra[name]
    return headers


async def _fail(db: AsyncDatabase, settings: Settings, m: Metered, err: TollboothError, status: UsageStatus,
                detail: str) -> NoReturn:
    """Release the reservation, record the failure, raise the error."""
    await settle_async(db, settings, m, status=status, http_status=err.status, usage=None, error=detail)
    raise err


async def proxy(db: AsyncDatabase, settings: Settings, m: Metered, user_agent: str | None) -> Reply:
    runtime(settings)[2].add(m.request_id)  # renew this request's lease while it lives
    client = async_upstream_client(settings)
    extra = {"x-request-id": m.request_id, **({"user-agent": user_agent} if user_agent else {})}
    req = chat_request(client, settings.require("openai_api_key"), upstream_body(m), extra_headers=extra)
    sent = time.perf_counter()
    try:
        resp = await client.send(req)
    except httpx.TimeoutException as exc:
        await _fail(db, settings, m, UpstreamTimeout("the model provider did not answer in time"),
                    "upstream_timeout", repr(exc))
    except httpx.HTTPError as exc:
        await _fail(db, settings, m, UpstreamError("could not reach the model provider"), "upstream_unreachable",
                    repr(exc))

    if resp.status_code >= 400:
        return await _relay_error(db, settings, m, resp, sent)
    if m.stream:
        return _relay_stream(db, settings, m, resp)
    return await _relay_json(db, settings, m, resp, sent)


async def _relay_error(db: AsyncDatabase, settings: Settings, m: Metered, resp: http1.Response, sent: float) -> Reply:
    try:
        content = await resp.aread()
    except httpx.HTTPError:
        content = b""
    finally:
        await resp.aclose()
    upstream_s = time.perf_counter() - sent
    if resp.status_code >= 500:
        await _fail(db, settings, m, UpstreamError(f"the model provider failed with HTTP {resp.status_code}"),
                    "upstream_error", content[:500].decode("utf-8", "replace"))
    result = await settle_async(db, settings, m, status="upstream_error", http_status=resp.status_code, usage=None,
                                error=content[:500].decode("utf-8", "replace"))
    remaining = result.remaining if result else m.grant.remaining
    return Reply(resp.status_code, _headers(m, remaining, upstream_s, resp.headers), content)


async def _relay_json(db: AsyncDatabase, settings: Settings, m: Metered, resp: http1.Response, sent: float) -> Reply:
    try:
        content = await resp.aread()
    except httpx.TimeoutException as exc:
        await _fail(db, settings, m, UpstreamTimeout("the model provider did not finish in time"),
                    "upstream_timeout", repr(exc))
    except httpx.HTTPError as exc:
        await _fail(db, settings, m, UpstreamError("the model provider broke off the response"), "upstream_error",
                    repr(exc))
    finally:
        await resp.aclose()
    upstream_s = time.perf_counter() - sent
    try:
        payload = json.loads(content)
    except ValueError:
        await _fail(db, settings, m, UpstreamError("the model provider sent a response that is not JSON"),
                    "upstream_error", content[:200].decode("utf-8", "replace"))
    usage = Usage.from_openai(payload.get("usage")) if isinstance(payload, dict) else None
    estimated = usage is None
    if usage is None:
        usage = estimated_usage(m, _content_tokens_guess(payload))
    upstream_id = payload.get("id") if isinstance(payload, dict) else None
    remaining = m.grant.remaining_after(usage)
    if remaining is None or not settle_behind(db, settings, m, usage=usage, estimated=estimated,
                                              upstream_id=upstream_id):
        result = await settle_async(db, settings, m, status="succeeded", http_status=200, usage=usage,
                                    estimated=estimated, upstream_id=upstream_id)
        # settled, or kept in the outbox to be settled when the database is back
        remaining = result.remaining if result else m.grant.remaining
    return Reply(200, _headers(m, remaining, upstream_s, resp.headers), content)


def _content_tokens_guess(payload: Any) -> int:
    try:
        text = "".join((c.get("message") or {}).get("content") or "" for c in payload["choices"])
    except (KeyError, TypeError, AttributeError):
        return 0
    return -(-len(text.encode("utf-8")) // 4)


def _relay_stream(db: AsyncDatabase, settings: Settings, m: Metered, resp: http1.Response) -> Reply:
    wants_usage = bool((m.body.get("stream_options") or {}).get("include_usage"))
    meter = StreamMeter(wants_usage)
    headers = _headers(m, m.grant.remaining, 0.0, resp.headers)
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def generate() -> AsyncIterator[bytes]:
        status: UsageStatus = "succeeded"
        batches = async_sse_batches(resp)
        try:
            async for batch in batches:
                out = [e for e in map(meter.observe, batch) if e is not None]
                if out:
                    yield b"\n\n".join(out) + b"\n\n"
            if not meter.done and meter.usage is None:
                status = "upstream_interrupted"
        except GeneratorExit:  # the client went away (lib.core.asgi closes us)
            status = "client_disconnected"
            await _drain(batches, meter, settings.disconnect_drain_seconds)
        except httpx.HTTPError as exc:
            status = "upstream_interrupted"
            log.warning("upstream stream broke off: %r", exc)
        finally:
            await resp.aclose()
            await _settle_stream(db, settings, m, meter, status)

    return Reply(200, headers, generate(), media_type="text/event-stream")


async def _drain(batches: AsyncIterator[list[bytes]], meter: StreamMeter, budget_s: float) -> None:
    """The client is gone: keep reading (without sending) until usage or the budget ends."""
    try:
        async with asyncio.timeout(budget_s):
            async for batch in batches:
                for event in batch:
                    meter.observe(event)
                if meter.usage is not None or meter.done:
                    break
    except (httpx.HTTPError, TimeoutError):
        pass


async def _settle_stream(db: AsyncDatabase, settings: Settings, m: Metered, meter: StreamMeter,
                         status: UsageStatus) -> None:
    usage, estimated = meter.usage, False
    if usage is None:
        usage, estimated = estimated_usage(m, meter.chunks), True
    if status == "succeeded" and settle_behind(db, settings, m, usage=usage, estimated=estimated,
                                                        upstream_id=meter.upstream_id):
        return  # the stream ends now; its settlement follows it
    try:
        await settle_async(db, settings, m, status=status, http_status=200, usage=usage, estimated=estimated,
                           upstream_id=meter.upstream_id)
    except TollboothError:  # not transient (those go to the outbox): a contract break, loudly
        log.exception("could not settle streamed request %s", m.request_id)
    except OSError:
        log.exception("could not settle streamed request %s nor write it to the outbox", m.request_id)
