"""The OpenAI-compatible upstream: one pooled, keep-alive HTTP client per base URL
(sync, httpx: embeddings and responses), and per base URL and event loop (async, the
lean HTTP/1.1 client of lib.chat.http1: chat completions)."""
from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import httpx

from lib.chat.http1 import Http1Client, Request
from lib.core.config import Settings

IDLE_CONNECTIONS, IDLE_EXPIRY_S = 50, 30.0  # kept alive per client
_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=IDLE_CONNECTIONS, keepalive_expiry=IDLE_EXPIRY_S)


@lru_cache(maxsize=8)
def _client(base_url: str, timeout_s: float, connect_s: float) -> httpx.Client:
    return httpx.Client(base_url=base_url.rstrip("/") + "/", timeout=httpx.Timeout(timeout_s, connect=connect_s),
                        limits=_LIMITS)


def upstream_client(settings: Settings) -> httpx.Client:
    return _client(settings.openai_base_url, settings.upstream_timeout_seconds,
                   settings.upstream_connect_timeout_seconds)


_ClientKey = tuple[str, float, float]
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_ClientKey, Http1Client]] = (
    weakref.WeakKeyDictionary())


def async_upstream_client(settings: Settings) -> Http1Client:
    """This event loop's client for the configured upstream (a client belongs to one loop)."""
    key = (settings.openai_base_url, settings.upstream_timeout_seconds, settings.upstream_connect_timeout_seconds)
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(key)
    if client is None:
        client = clients[key] = Http1Client(key[0], timeout=key[1], connect_timeout=key[2],
                                            max_idle=IDLE_CONNECTIONS, idle_expiry=IDLE_EXPIRY_S)
    return client


async def close_async_clients() -> None:
    """Close this loop's clients (the ASGI app's shutdown)."""
    for client in _async_clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


def chat_request(client: Http1Client, api_key: str, body: bytes, *, extra_headers: dict[str, str]) -> Request:
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json", **extra_headers}
    return client.build_request("POST", "chat/completions", content=body, headers=headers)
