"""The chat proxy's money path: who is calling, what to reserve, what to settle.

Two database calls per request: `begin_chat_request` (authenticate, authorize the
model, reserve the worst case) and `finish_chat_request` (price the real usage,
settle or release, record usage_events and api_requests in one transaction).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import flask
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from lib.auth import bearer_token, verify_access_token
from lib.config import Settings
from lib.db import Database
from lib.errors import BadRequest, PaymentRequired
from lib.keys import hash_api_key, is_api_key
from lib.token_bounds import prompt_token_bound, prompt_token_estimate


class ChatBody(BaseModel):
    """The Chat Completions request; parameters we do not know pass through untouched."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: StrictBool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stream_options: dict[str, Any] | None = None


@dataclass(frozen=True)
class Caller:
    key_hash: bytes | None = None
    user_id: uuid.UUID | None = None
    org_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> "Usage | None":
        if not isinstance(usage, dict) or "prompt_tokens" not in usage:
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(prompt_details.get("cached_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        )


@dataclass
class Metered:
    """One request between begin and finish."""

    request_id: str
    endpoint: str
    body: dict[str, Any]
    grant: dict[str, Any]
    meeting_id: uuid.UUID | None
    stream: bool
    started: float = field(default_factory=time.perf_counter)

    @property
    def org_id(self) -> str:
        return self.grant["org_id"]


def _uuid_header(request: flask.Request, name: str) -> uuid.UUID | None:
    raw = request.headers.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a UUID") from exc


def authenticate(request: flask.Request, settings: Settings) -> Caller:
    """An `xan_…` key (checked in the database by begin) or a Supabase user JWT."""
    token = bearer_token(request.headers.get("authorization"))
    if is_api_key(token, settings.api_key_prefix):
        return Caller(key_hash=hash_api_key(token))
    claims = verify_access_token(token, settings)
    return Caller(user_id=claims.user_id, org_id=_uuid_header(request, "x-org-id"))


def completion_limit(body: ChatBody) -> int | None:
    return body.max_completion_tokens or body.max_tokens


def begin(db: Database, caller: Caller, body: ChatBody, raw: dict[str, Any], *,
          request_id: str, endpoint: str, request: flask.Request, started: float | None = None) -> Metered:
    meeting_id = _uuid_header(request, "x-meeting-id")
    try:
        grant = db.rpc("begin_chat_request", {
            "request_id": request_id,
            "model": body.model,
            "prompt_tokens_bound": prompt_token_bound(raw),
            "completion_tokens_limit": completion_limit(body),
            "choices": body.n or 1,
            "key_hash": caller.key_hash,
            "user_id": caller.user_id,
            "org_id": caller.org_id,
        })
    except PaymentRequired as err:
        err.headers["x-should-retry"] = "false"
        raise
    return Metered(request_id, endpoint, raw, grant, meeting_id, body.stream, started or time.perf_counter())


def finish(db: Database, m: Metered, *, status: str, http_status: int, usage: Usage | None,
           estimated: bool = False, upstream_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    return db.rpc("finish_chat_request", {
        "request_id": m.request_id,
        "status": status,
        "http_status": http_status,
        "endpoint": m.endpoint,
        "org_id": m.grant["org_id"],
        "model": m.grant["model"],
        "api_key_id": m.grant.get("api_key_id"),
        "user_id": m.grant.get("user_id"),
        "project_id": m.grant.get("project_id"),
        "meeting_id": m.meeting_id,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else 0,
        "reasoning_tokens": usage.reasoning_tokens if usage else 0,
        "estimated": estimated,
        "stream": m.stream,
        "upstream_id": upstream_id,
        "latency_ms": int((time.perf_counter() - m.started) * 1000),
        "error": error,
    })


def estimated_usage(m: Metered, completion_chunks: int) -> Usage:
    """What to charge when the upstream never reported usage: a typical prompt count
    plus one token per content chunk seen."""
    return Usage(prompt_tokens=prompt_token_estimate(m.body), completion_tokens=max(completion_chunks, 0))
