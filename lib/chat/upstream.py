"""The OpenAI-compatible upstream: one pooled HTTP client per base URL."""
from __future__ import annotations

from functools import lru_cache

import httpx

from lib.core.config import Settings


@lru_cache(maxsize=8)
def _client(base_url: str, timeout_s: float, connect_s: float) -> httpx.Client:
    return httpx.Client(
        base_url=base_url.rstrip("/") + "/",
        timeout=httpx.Timeout(timeout_s, connect=connect_s),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30),
    )


def upstream_client(settings: Settings) -> httpx.Client:
    return _client(settings.openai_base_url, settings.upstream_timeout_seconds,
                   settings.upstream_connect_timeout_seconds)


def chat_request(client: httpx.Client, api_key: str, body: bytes, *, extra_headers: dict[str, str]) -> httpx.Request:
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json", **extra_headers}
    return client.build_request("POST", "chat/completions", content=body, headers=headers)
