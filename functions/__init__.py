"""HTTP functions, one module per job. `ROUTES` is the single table of which path is
served by which module and target; `tollbooth serve`, vercel.json and its test read it."""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from lib.core.server import Mount


@dataclass(frozen=True)
class Route:
    path: str  # flask rule syntax for path parameters
    module: str  # functions/<module>.py
    target: str  # the function inside it (functions-framework --target)
    methods: tuple[str, ...]


ROUTES: list[Route] = [
    Route("/api/health", "health", "health", ("GET",)),
    Route("/api/stripe/webhook", "stripe_webhook", "stripe_webhook", ("POST",)),
    Route("/api/stripe/checkout", "stripe_checkout", "stripe_checkout", ("POST",)),
    Route("/api/stripe/portal", "stripe_portal", "stripe_portal", ("POST",)),
    Route("/api/stripe/sync", "stripe_sync", "stripe_sync", ("POST",)),
    Route("/api/daily/webhook", "daily_webhook", "daily_webhook", ("POST",)),
    Route("/api/meetings", "meetings", "meetings", ("POST",)),
    Route("/api/meetings/<meeting_id>/cancel", "meetings", "meetings", ("POST",)),
    Route("/api/rooms/<meeting_id>/state", "room_state", "room_state", ("GET", "PUT")),
    Route("/v1/chat/completions", "chat", "chat", ("POST",)),
    Route("/api/chat", "chat", "chat", ("POST",)),
    Route("/v1/models", "models", "models", ("GET",)),
    Route("/v1/usage", "key_usage", "key_usage", ("GET",)),
    Route("/api/usage", "usage", "usage", ("GET",)),
    Route("/api/usage/requests", "usage_requests", "usage_requests", ("GET",)),
    Route("/api/cron/usage-rollup", "usage_rollup", "usage_rollup", ("GET", "POST")),
    Route("/v1/embeddings", "embeddings", "embeddings", ("POST",)),
    Route("/v1/responses", "responses", "responses", ("POST",)),
]


def mounts() -> list[Mount]:
    """Every route with its function loaded, for one server that serves them all."""
    return [Mount(r.path, r.module, getattr(importlib.import_module(f"functions.{r.module}"), r.target))
            for r in ROUTES]
