"""Forwarding a metered chat request upstream and relaying the answer.

Non-streaming: relay the JSON, settle from its usage. Streaming: relay SSE events as
they arrive, always asking upstream for the usage chunk and passing it on only if the
client asked; settle when the stream ends. If the client goes away mid-stream, keep
reading upstream (bounded) for the usage; without it, charge an estimate and mark the
usage row estimated. Upstream 4xx is relayed; 5xx, timeouts and connection errors
become 502/504. Every failure before output releases the reservation.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterator, NoReturn

import flask
import httpx

from lib.chat_metering import Metered, Usage, estimated_usage, finish
from lib.config import Settings
from lib.db import Database
from lib.errors import TollboothError, UpstreamError, UpstreamTimeout
from lib.log import get_logger
from lib.upstream import chat_request, upstream_client

log = get_logger("chat")
RELAYED_HEADERS = ("openai-processing-ms", "openai-version", "x-ratelimit-limit-requests",
                   "x-ratelimit-remaining-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                   "retry-after")


def upstream_body(m: Metered) -> bytes:
    body = dict(m.body)
    if m.grant.get("limit_capped"):
        body["max_completion_tokens"] = m.grant["completion_tokens_limit"]
    if m.stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _headers(m: Metered, remaining: Any, upstream_s: float, extra: httpx.Headers | None = None) -> dict[str, str]:
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


def _fail(db: Database, m: Metered, err: TollboothError, status: str, detail: str) -> NoReturn:
    """Release the reservation, record the failure, raise the error."""
    finish(db, m, status=status, http_status=err.status, usage=None, error=detail)
    raise err


def proxy(db: Database, settings: Settings, m: Metered, user_agent: str | None) -> flask.Response:
    client = upstream_client(settings)
    req = chat_request(client, settings.require("openai_api_key"), upstream_body(m),
                       extra_headers={"x-request-id": m.request_id, **({"user-agent": user_agent} if user_agent else {})})
    sent = time.perf_counter()
    try:
        resp = client.send(req, stream=True)
    except httpx.TimeoutException as exc:
        _fail(db, m, UpstreamTimeout("the model provider did not answer in time"), "upstream_timeout", repr(exc))
    except httpx.HTTPError as exc:
        _fail(db, m, UpstreamError("could not reach the model provider"), "upstream_unreachable", repr(exc))

    if resp.status_code >= 400:
        return _relay_error(db, m, resp, sent)
    if m.stream:
        return _relay_stream(db, settings, m, resp, sent)
    return _relay_json(db, m, resp, sent)


def _relay_error(db: Database, m: Metered, resp: httpx.Response, sent: float) -> flask.Response:
    try:
        content = resp.read()
    except httpx.HTTPError:
        content = b""
    finally:
        resp.close()
    upstream_s = time.perf_counter() - sent
    if resp.status_code >= 500:
        _fail(db, m, UpstreamError(f"the model provider failed with HTTP {resp.status_code}"),
              "upstream_error", content[:500].decode("utf-8", "replace"))
    result = finish(db, m, status="upstream_error", http_status=resp.status_code, usage=None,
                    error=content[:500].decode("utf-8", "replace"))
    return flask.Response(content, status=resp.status_code, mimetype="application/json",
                          headers=_headers(m, result.get("remaining"), upstream_s, resp.headers))


def _relay_json(db: Database, m: Metered, resp: httpx.Response, sent: float) -> flask.Response:
    try:
        content = resp.read()
    except httpx.TimeoutException as exc:
        _fail(db, m, UpstreamTimeout("the model provider did not finish in time"), "upstream_timeout", repr(exc))
    except httpx.HTTPError as exc:
        _fail(db, m, UpstreamError("the model provider broke off the response"), "upstream_error", repr(exc))
    finally:
        resp.close()
    upstream_s = time.perf_counter() - sent
    try:
        payload = json.loads(content)
    except ValueError:
        _fail(db, m, UpstreamError("the model provider sent a response that is not JSON"), "upstream_error",
              content[:200].decode("utf-8", "replace"))
    usage = Usage.from_openai(payload.get("usage")) if isinstance(payload, dict) else None
    estimated = usage is None
    if usage is None:
        usage = estimated_usage(m, _content_tokens_guess(payload))
    result = finish(db, m, status="succeeded", http_status=200, usage=usage, estimated=estimated,
                    upstream_id=payload.get("id") if isinstance(payload, dict) else None)
    return flask.Response(content, status=200, mimetype="application/json",
                          headers=_headers(m, result.get("remaining"), upstream_s, resp.headers))


def _content_tokens_guess(payload: Any) -> int:
    try:
        text = "".join((c.get("message") or {}).get("content") or "" for c in payload["choices"])
    except (KeyError, TypeError, AttributeError):
        return 0
    return -(-len(text.encode("utf-8")) // 4)


class StreamMeter:
    """Watches SSE events go by: the usage chunk, the chunk count, the upstream id."""

    def __init__(self, client_wants_usage: bool):
        self.client_wants_usage = client_wants_usage
        self.usage: Usage | None = None
        self.upstream_id: str | None = None
        self.chunks = 0
        self.done = False

    def observe(self, event: bytes) -> bytes | None:
        """The event to send the client, or None to hold it back."""
        data = event[6:] if event.startswith(b"data: ") else (event[5:] if event.startswith(b"data:") else None)
        if data is None:
            return event
        if data.strip() == b"[DONE]":
            self.done = True
            return event
        if not self.client_wants_usage and b'"usage"' in event:
            # we asked upstream for usage; a client that did not sees chunks as OpenAI sends them
            event = event.replace(b',"usage":null', b"").replace(b', "usage": null', b"")
        if self.upstream_id is None or _has_usage(data):
            try:
                chunk = json.loads(data)
            except ValueError:
                return event
            self.upstream_id = self.upstream_id or chunk.get("id")
            usage = Usage.from_openai(chunk.get("usage"))
            if usage is not None:
                self.usage = usage
                if not chunk.get("choices") and not self.client_wants_usage:
                    return None
                return event
        self.chunks += 1
        return event


def _has_usage(data: bytes) -> bool:
    """Cheap pre-check before parsing: a chunk with a non-null usage object."""
    at = data.find(b'"usage"')
    return at >= 0 and data[at + 7:at + 16].lstrip(b": ")[:1] == b"{"


def sse_events(resp: httpx.Response) -> Iterator[bytes]:
    buffer = b""
    for piece in resp.iter_raw():
        buffer += piece
        if b"\r\n" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if event:
                yield event
    if buffer.strip():
        yield buffer


def _relay_stream(db: Database, settings: Settings, m: Metered, resp: httpx.Response, sent: float) -> flask.Response:
    wants_usage = bool((m.body.get("stream_options") or {}).get("include_usage"))
    meter = StreamMeter(wants_usage)
    headers = _headers(m, m.grant.get("remaining"), 0.0, resp.headers)
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})

    def generate() -> Iterator[bytes]:
        status = "succeeded"
        events = sse_events(resp)
        try:
            for event in events:
                out = meter.observe(event)
                if out is not None:
                    yield out + b"\n\n"
            if not meter.done and meter.usage is None:
                status = "upstream_interrupted"
        except GeneratorExit:
            status = "client_disconnected"
            _drain(events, meter, settings.disconnect_drain_seconds)
        except httpx.HTTPError as exc:
            status = "upstream_interrupted"
            log.warning("upstream stream broke off: %r", exc)
        finally:
            resp.close()
            _settle_stream(db, m, meter, status)

    return flask.Response(generate(),
                          status=200, mimetype="text/event-stream", headers=headers)


def _drain(events: Iterator[bytes], meter: StreamMeter, budget_s: float) -> None:
    """The client is gone: keep reading (without sending) until usage or the budget ends."""
    deadline = time.monotonic() + budget_s
    try:
        for event in events:
            meter.observe(event)
            if meter.usage is not None or meter.done or time.monotonic() > deadline:
                break
    except httpx.HTTPError:
        pass


def _settle_stream(db: Database, m: Metered, meter: StreamMeter, status: str) -> None:
    usage, estimated = meter.usage, False
    if usage is None:
        usage, estimated = estimated_usage(m, meter.chunks), True
    try:
        finish(db, m, status=status, http_status=200, usage=usage, estimated=estimated, upstream_id=meter.upstream_id)
    except TollboothError:
        log.exception("could not settle streamed request %s; the reservation expires and is released", m.request_id)
