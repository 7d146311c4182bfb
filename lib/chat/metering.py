"""The chat proxy's money path: who is calling, what to reserve, what to settle.

Two database calls per request: `begin_chat_request` (authenticate, authorize the
model, reserve the worst case) answers a `Grant`; `finish_chat_request` (price the
real usage, settle or release, record usage_events and api_requests in one
transaction) answers a `Settlement`. Both are typed here, read strictly: a key the
SQL stops sending fails loudly, and a test compares the keys with the SQL's answers.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import MISSING, dataclass, field, fields, replace
from decimal import ROUND_CEILING, Decimal, localcontext
from functools import cache
from typing import Any, Literal, Protocol, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from lib.chat.client_ip import client_ip
from lib.chat.token_bounds import prompt_token_bound, prompt_token_estimate
from lib.core.auth import bearer_token, looks_like_jwt, verify_access_token
from lib.core.config import Settings
from lib.core.crypto import hash_api_key
from lib.core.db import Database
from lib.core.errors import BadRequest, PaymentRequired, RateLimited, TollboothError, Unauthorized
from lib.core.log import get_logger

log = get_logger("chat")

# the values of public.usage_status (the SQL type owns them; a test compares)
UsageStatus = Literal["succeeded", "upstream_error", "upstream_timeout", "upstream_unreachable",
                      "upstream_interrupted", "client_disconnected"]
USAGE_STATUSES: tuple[str, ...] = get_args(UsageStatus)


class Headers(Protocol):
    """Case-insensitive request headers (flask's, starlette's and httpx's all are)."""

    def get(self, key: str, /) -> str | None: ...


class Billable(Protocol):
    """What begin reads of a request body (ChatBody, and lib.chat.endpoints' bodies)."""

    @property
    def model(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def n(self) -> int | None: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def max_completion_tokens(self) -> int | None: ...


class Message(BaseModel):
    """One chat message: a known role, and content (text or parts) unless the message
    is an assistant's tool call. Other fields pass through untouched."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _has_content(self) -> Message:
        extra = self.model_extra or {}
        if self.content is None and not (self.role == "assistant" and (extra.get("tool_calls")
                                                                       or extra.get("function_call"))):
            raise ValueError("a message needs content (or, from the assistant, tool_calls)")
        return self


class ChatBody(BaseModel):
    """The Chat Completions request; parameters we do not know pass through untouched.
    Numbers are strict: `true` is not a token count."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=100_000)
    stream: StrictBool = False
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    n: StrictInt | None = Field(default=None, ge=1, le=128)
    stream_options: dict[str, Any] | None = None


T = TypeVar("T")


@cache
def _field_names(cls: Any) -> tuple[frozenset[str], frozenset[str]]:
    """A dataclass's field names, and those without a default (asked once per class)."""
    return (frozenset(f.name for f in fields(cls)),
            frozenset(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING))


def _from_sql(cls: type[T], answer: Any, fn: str) -> T:
    """A dataclass from a SQL function's jsonb answer; a missing key is a contract break."""
    if not isinstance(answer, dict):
        raise TollboothError(f"{fn} answered {type(answer).__name__}, not an object")
    names, required = _field_names(cls)  # type: ignore[arg-type]
    missing = required - answer.keys()
    if missing:
        raise TollboothError(f"{fn} did not answer {sorted(missing)}")
    return cls(**{k: v for k, v in answer.items() if k in names})


@dataclass(frozen=True)
class Price:
    """What `finish_chat_request` prices a call at (begin answers it with the grant):
    the same arithmetic as private.usage_cost_usd and private.usd_to_credits, exact, so
    the proxy can tell the client its balance after settlement before the settlement
    returns. The database's charge is the one that counts."""

    input_usd_per_1m: Decimal
    cached_input_usd_per_1m: Decimal
    output_usd_per_1m: Decimal
    credit_multiplier: Decimal
    credits_per_usd: Decimal

    @classmethod
    def from_sql(cls, answer: Any) -> Price:
        if not isinstance(answer, dict):
            raise TollboothError(f"begin_chat_request answered a price that is {type(answer).__name__}")
        try:
            return cls(**{f.name: Decimal(str(answer[f.name])) for f in fields(cls)})
        except (KeyError, ArithmeticError) as exc:
            raise TollboothError(f"begin_chat_request answered a price without a decimal {exc}") from exc

    def credits(self, usage: Usage) -> int:
        """The credits `usage` costs (rounded up, as usd_to_credits does)."""
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        with localcontext(prec=80):
            cost = (max(usage.prompt_tokens - cached, 0) * self.input_usd_per_1m
                    + cached * self.cached_input_usd_per_1m
                    + usage.completion_tokens * self.output_usd_per_1m) / 1_000_000
            return int((cost * self.credits_per_usd * self.credit_multiplier).to_integral_value(ROUND_CEILING))


@dataclass(frozen=True)
class Grant:
    """What `public.begin_chat_request` answers: the reservation and who pays."""

    org_id: str
    api_key_id: str | None
    project_id: str | None
    user_id: str | None
    plan_id: str
    model: str
    reserved: int
    remaining: int
    completion_tokens_limit: int
    limit_capped: bool
    # x-ratelimit-* headers for a key with rpm/tpm limits (None without)
    ratelimit: dict[str, str] | None = None
    # what finish prices the usage at (None from a database older than migration chat_price)
    price: Price | None = None

    @classmethod
    def from_sql(cls, answer: Any) -> Grant:
        grant = _from_sql(cls, answer, "begin_chat_request")
        return replace(grant, price=Price.from_sql(grant.price)) if grant.price is not None else grant

    def remaining_after(self, usage: Usage) -> int | None:
        """The balance once this call is settled at `usage`, as of its reservation
        (finish_chat_request caps a charge above the hold at the balance); None
        without a price."""
        if self.price is None:
            return None
        charge = min(self.price.credits(usage), self.reserved + self.remaining)
        return self.remaining + self.reserved - charge


@dataclass(frozen=True)
class Settlement:
    """What `public.finish_chat_request` answers. A replay (the request was already
    finished) carries only the first four, plus `charged` when it had settled."""

    org_id: str
    status: str  # the reservation's: 'settled' or 'released'
    remaining: int
    replayed: bool
    charged: int | None = None
    uncollected: int | None = None
    cost_usd: Decimal | None = None
    credits: int | None = None

    @classmethod
    def from_sql(cls, answer: Any) -> Settlement:
        return _from_sql(cls, answer, "finish_chat_request")


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
    def from_openai(cls, usage: Any) -> Usage | None:
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
    grant: Grant
    meeting_id: uuid.UUID | None
    stream: bool
    started: float = field(default_factory=time.perf_counter)

    @property
    def org_id(self) -> str:
        return self.grant.org_id


# the organization each caller's last request was billed to: the lane (lib.core.lanes)
# its next begin goes in, with that organization's settlements (a guess: only sharing
# the lane's connection depends on it)
_org_of_caller: dict[Caller, str] = {}
LANES_REMEMBERED = 10_000


def lane_of(caller: Caller) -> Caller | str:
    return _org_of_caller.get(caller, caller)


def remember_lane(caller: Caller, m: Metered) -> None:
    if _org_of_caller.get(caller) != m.org_id:
        if len(_org_of_caller) >= LANES_REMEMBERED:
            _org_of_caller.clear()
        _org_of_caller[caller] = m.org_id


def uuid_header(headers: Headers, name: str) -> uuid.UUID | None:
    raw = headers.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a UUID") from exc


def authenticate(headers: Headers, settings: Settings) -> Caller:
    """A Supabase user JWT, or else an API key (checked in the database by begin, which
    owns the key format: its prefix lives in private.app_settings)."""
    token = bearer_token(headers.get("authorization"))
    if not looks_like_jwt(token):
        return Caller(key_hash=hash_api_key(token))
    claims = verify_access_token(token, settings)
    return Caller(user_id=claims.user_id, org_id=uuid_header(headers, "x-org-id"))


def completion_limit(body: Billable) -> int | None:
    return body.max_completion_tokens or body.max_tokens


def apply_sql_detail(err: TollboothError) -> TollboothError:
    """A begin refusal's DETAIL is a JSON object naming the error type (model_not_allowed,
    ip_not_allowed, key_budget_exceeded, rate_limit_exceeded, trial_expired) and headers
    (retry-after, x-ratelimit-*): the SQL owns them, this applies them."""
    try:
        detail = json.loads(err.detail) if err.detail else None
    except ValueError:
        return err
    if isinstance(detail, dict):
        if isinstance(detail.get("type"), str):
            err.type = detail["type"]
        for name, value in (detail.get("headers") or {}).items():
            err.headers[str(name)] = str(value)
    return err


def begin_error(db: Database, caller: Caller, err: TollboothError) -> TollboothError:
    """The HTTP error for a refusal of begin_chat_request (or list_models_for_caller)."""
    apply_sql_detail(err)
    if isinstance(err, PaymentRequired):
        err.headers["x-should-retry"] = "false"
    elif isinstance(err, RateLimited):
        err.headers.setdefault("x-should-retry", "true")
    elif isinstance(err, Unauthorized):
        if err.type == "trial_expired":
            try:  # the refusal rolled back: end the trial (and its credits) now, once
                db.rpc("expire_trials", {})
            except TollboothError:
                log.warning("could not expire trials after a trial_expired refusal")
        elif caller.key_hash is not None and err.type == Unauthorized.type:
            err.type = "invalid_api_key"  # OpenAI's code for a key it does not know
    return err


def begin(db: Database, caller: Caller, body: Billable, raw: dict[str, Any], *,
          request_id: str, endpoint: str, headers: Headers, started: float | None = None,
          lease_seconds: int | None = None, peer: str | None = None, trusted_proxies: str | None = None,
          kind: str = "chat", prompt_bound: int | None = None) -> Metered:
    meeting_id = uuid_header(headers, "x-meeting-id")
    if meeting_id is not None:  # a meeting of the org this call is billed to (403 otherwise), before reserving
        db.rpc("chat_meeting_check", {"meeting_id": meeting_id, "key_hash": caller.key_hash,
                                      "user_id": caller.user_id, "org_id": caller.org_id})
    try:
        answer = db.rpc("begin_chat_request", {
            "request_id": request_id,
            "model": body.model,
            "prompt_tokens_bound": prompt_token_bound(raw) if prompt_bound is None else prompt_bound,
            "completion_tokens_limit": completion_limit(body),
            "choices": body.n or 1,
            "key_hash": caller.key_hash,
            "user_id": caller.user_id,
            "org_id": caller.org_id,
            **({"ttl_seconds": lease_seconds} if lease_seconds else {}),
            **({"client_ip": ip} if (ip := client_ip(peer, headers.get("x-forwarded-for"), trusted_proxies)) else {}),
            **({"kind": kind} if kind != "chat" else {}),
        })
    except TollboothError as err:
        begin_error(db, caller, err)
        raise
    return Metered(request_id, endpoint, raw, Grant.from_sql(answer), meeting_id, body.stream,
                   started or time.perf_counter())


def finish(db: Database, m: Metered, *, status: UsageStatus, http_status: int, usage: Usage | None,
           estimated: bool = False, upstream_id: str | None = None, error: str | None = None) -> Settlement:
    """One attempt at `finish_chat_request` (lib.chat.settlement.settle retries and
    keeps what it cannot write)."""
    return Settlement.from_sql(db.rpc("finish_chat_request", finish_args(
        m, status=status, http_status=http_status, usage=usage, estimated=estimated, upstream_id=upstream_id,
        error=error)))


def finish_args(m: Metered, *, status: UsageStatus, http_status: int, usage: Usage | None,
                estimated: bool = False, upstream_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    """The arguments of `finish_chat_request` for this request, plain JSON values (the
    outbox stores them as they are)."""
    return {
        "request_id": m.request_id,
        "status": status,
        "http_status": http_status,
        "endpoint": m.endpoint,
        "org_id": m.grant.org_id,
        "model": m.grant.model,
        "api_key_id": m.grant.api_key_id,
        "user_id": m.grant.user_id,
        "project_id": m.grant.project_id,
        "meeting_id": str(m.meeting_id) if m.meeting_id else None,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else 0,
        "reasoning_tokens": usage.reasoning_tokens if usage else 0,
        "estimated": estimated,
        "stream": m.stream,
        "upstream_id": upstream_id,
        "latency_ms": int((time.perf_counter() - m.started) * 1000),
        "error": error,
        # what begin held: a reservation a database crash took is still charged
        "reserved": m.grant.reserved,
    }


def estimated_usage(m: Metered, completion_chunks: int) -> Usage:
    """What to charge when the upstream never reported usage: a typical prompt count
    plus one token per content chunk seen."""
    return Usage(prompt_tokens=prompt_token_estimate(m.body), completion_tokens=max(completion_chunks, 0))
