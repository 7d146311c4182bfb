"""Forwarding the other metered endpoints upstream (`embeddings`, `responses`) and
relaying the answer, with chat's rules (lib.chat.proxy): every failure before output
releases the reservation, upstream 4xx is relayed, 5xx / timeouts / connection errors
become 502 / 504, and a stream is settled when it ends.

Streams of the Responses API carry `event:` lines and end with `response.completed`,
whose `response.usage` is what we charge; there is no `[DONE]`. Without that event (the
stream broke off, or the client left and the drain found none) we charge an estimate:
the prompt's usual size and one token per text delta seen.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import httpx

from lib.chat.metering import Metered, Usage, UsageStatus
from lib.chat.proxy import _headers
from lib.chat.settlement import runtime, settle
from lib.chat.sse import sse_events
from lib.chat.upstream import upstream_client
from lib.core.config import Settings
from lib.core.db import Database
from lib.core.errors import TollboothError, UpstreamError, UpstreamTimeout
from lib.core.http import Reply
from lib.core.log import get_logger

log = get_logger("chat")
UsageOf = Callable[[Any], Usage | None]


def _fail(db: Database, settings: Settings, m: Metered, err: TollboothError, status: UsageStatus,
          detail: str) -> NoReturn:
    """Release the reservation, record the failure, raise the error (the sync twin of
    lib.chat.proxy's, for the flask endpoints)."""
    settle(db, settings, m, status=status, http_status=err.status, usage=None, error=detail)
    raise err


def _relay_error(db: Database, settings: Settings, m: Metered, resp: httpx.Response, sent: float) -> Reply:
    try:
        content = resp.read()
    except httpx.HTTPError:
        content = b""
    finally:
        resp.close()
    upstream_s = time.perf_counter() - sent
    if resp.status_code >= 500:
        _fail(db, settings, m, UpstreamError(f"the model provider failed with HTTP {resp.status_code}"),
              "upstream_error", content[:500].decode("utf-8", "replace"))
    result = settle(db, settings, m, status="upstream_error", http_status=resp.status_code, usage=None,
                    error=content[:500].decode("utf-8", "replace"))
    remaining = result.remaining if result else m.grant.remaining
    return Reply(resp.status_code, _headers(m, remaining, upstream_s, resp.headers), content)


def forward(db: Database, settings: Settings, m: Metered, path: str, body: dict[str, Any], usage_of: UsageOf,
            estimate: Callable[[int], Usage], user_agent: str | None) -> Reply:
    """POST `path` upstream with `body`; relay and settle as chat does."""
    runtime(settings)[2].add(m.request_id)  # renew this request's lease while it lives
    client = upstream_client(settings)
    headers = {"authorization": f"Bearer {settings.require('openai_api_key')}", "content-type": "application/json",
               "x-request-id": m.request_id, **({"user-agent": user_agent} if user_agent else {})}
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    req = client.build_request("POST", path, content=content, headers=headers)
    sent = time.perf_counter()
    try:
        resp = client.send(req, stream=True)
    except httpx.TimeoutException as exc:
        _fail(db, settings, m, UpstreamTimeout("the model provider did not answer in time"), "upstream_timeout",
              repr(exc))
    except httpx.HTTPError as exc:
        _fail(db, settings, m, UpstreamError("could not reach the model provider"), "upstream_unreachable", repr(exc))
    if resp.status_code >= 400:
        return _relay_error(db, settings, m, resp, sent)
    if m.stream:
        return _relay_events(db, settings, m, resp, usage_of, estimate)
    return _relay_json(db, settings, m, resp, sent, usage_of, estimate)


def _relay_json(db: Database, settings: Settings, m: Metered, resp: httpx.Response, sent: float, usage_of: UsageOf,
                estimate: Callable[[int], Usage]) -> Reply:
    try:
        content = resp.read()
    except httpx.TimeoutException as exc:
        _fail(db, settings, m, UpstreamTimeout("the model provider did not finish in time"), "upstream_timeout",
              repr(exc))
    except httpx.HTTPError as exc:
        _fail(db, settings, m, UpstreamError("the model provider broke off the response"), "upstream_error", repr(exc))
    finally:
        resp.close()
    upstream_s = time.perf_counter() - sent
    try:
        payload = json.loads(content)
    except ValueError:
        _fail(db, settings, m, UpstreamError("the model provider sent a response that is not JSON"), "upstream_error",
              content[:200].decode("utf-8", "replace"))
    usage = usage_of(payload.get("usage")) if isinstance(payload, dict) else None
    estimated = usage is None
    result = settle(db, settings, m, status="succeeded", http_status=200, usage=usage or estimate(0),
                    estimated=estimated, upstream_id=payload.get("id") if isinstance(payload, dict) else None)
    remaining = result.remaining if result else m.grant.remaining
    return Reply(200, _headers(m, remaining, upstream_s, resp.headers), content)


class ResponsesMeter:
    """Watches Responses API events: the usage of `response.completed`, the deltas, the id."""

    def __init__(self, usage_of: UsageOf):
        self.usage_of = usage_of
        self.usage: Usage | None = None
        self.upstream_id: str | None = None
        self.chunks = 0
        self.done = False

    def observe(self, event: bytes) -> bytes:
        kind = next((line[6:].strip() for line in event.split(b"\n") if line.startswith(b"event:")), b"")
        if kind == b"response.output_text.delta":
            self.chunks += 1
        elif kind in (b"response.created", b"response.completed", b"response.incomplete", b"response.failed"):
            data = next((line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")), b"")
            try:
                response = json.loads(data).get("response") or {}
            except (ValueError, AttributeError):
                return event
            self.upstream_id = self.upstream_id or response.get("id")
            if kind != b"response.created":
                self.done = True
                self.usage = self.usage_of(response.get("usage")) or self.usage
        return event


def _relay_events(db: Database, settings: Settings, m: Metered, resp: httpx.Response, usage_of: UsageOf,
                  estimate: Callable[[int], Usage]) -> Reply:
    meter = ResponsesMeter(usage_of)
    headers = _headers(m, m.grant.remaining, 0.0, resp.headers)
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})

    def generate() -> Iterator[bytes]:
        status: UsageStatus = "succeeded"
        events = sse_events(resp)
        try:
            for event in events:
                yield meter.observe(event) + b"\n\n"
            if not meter.done:
                status = "upstream_interrupted"
        except GeneratorExit:
            status = "client_disconnected"
            _drain_events(events, meter, settings.disconnect_drain_seconds)
        except httpx.HTTPError as exc:
            status = "upstream_interrupted"
            log.warning("upstream stream broke off: %r", exc)
        finally:
            resp.close()
            usage, estimated = meter.usage, meter.usage is None
            try:
                settle(db, settings, m, status=status, http_status=200, usage=usage or estimate(meter.chunks),
                       estimated=estimated, upstream_id=meter.upstream_id)
            except (TollboothError, OSError):
                log.exception("could not settle streamed request %s", m.request_id)

    return Reply(200, headers, generate(), media_type="text/event-stream")


def _drain_events(events: Iterator[bytes], meter: ResponsesMeter, budget_s: float) -> None:
    """The client is gone: keep reading (without sending) until the usage or the budget ends."""
    deadline = time.monotonic() + budget_s
    try:
        for event in events:
            meter.observe(event)
            if meter.done or time.monotonic() > deadline:
                break
    except httpx.HTTPError:
        pass
