"""The OpenAI-compatible upstream: one pooled, keep-alive HTTP client per base URL
(sync), and per base URL and event loop (async)."""
from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import httpx

from lib.core.config import Settings

_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30)


@lru_cache(maxsize=8)
def _client(base_url: str, timeout_s: float, connect_s: float) -> httpx.Client:
    return httpx.Client(base_url=base_url.rstrip("/") + "/", timeout=httpx.Timeout(timeout_s, connect=connect_s),
                        limits=_LIMITS)


def upstream_client(settings: Settings) -> httpx.Client:
    return _client(settings.openai_base_url, settings.upstream_timeout_seconds,
                   settings.upstream_connect_timeout_seconds)


_ClientKey = tuple[str, float, float]
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_ClientKey, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary())


def async_upstream_client(settings: Settings) -> httpx.AsyncClient:
    """This event loop's client for the configured upstream (a client belongs to one loop)."""
    key = (settings.openai_base_url, settings.upstream_timeout_seconds, settings.upstream_connect_timeout_seconds)
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(key)
    if client is None:
        client = clients[key] = httpx.AsyncClient(
            base_url=key[0].rstrip("/") + "/", timeout=httpx.Timeout(key[1], connect=key[2]), limits=_LIMITS)
    return client


async def close_async_clients() -> None:
    """Close this loop's clients (the ASGI app's shutdown)."""
    for client in _async_clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


def chat_request(client: httpx.Client | httpx.AsyncClient, api_key: str, body: bytes, *,
                 extra_headers: dict[str, str]) -> httpx.Request:
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json", **extra_headers}
    return client.build_request("POST", "chat/completions", content=body, headers=headers)
