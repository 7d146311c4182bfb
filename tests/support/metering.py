"""API keys and the chat proxy's SQL calls, as the database tests drive them:
create_key (create_api_key as a person), begin / finish (begin_chat_request and
finish_chat_request as the service), model prices and the credits-per-dollar rate."""
from __future__ import annotations

import hashlib
import re
from decimal import ROUND_CEILING, Decimal

from tests.support.personas import Person
from tests.support.pg import as_user, one, scalar

KEY_RE = re.compile(r"^xan_[0-9a-f]{64}$")


def sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def create_key(conn, person: Person, org, name: str = "test key", **kw) -> dict:
    """create_api_key as `person` (PostgREST-style); returns its JSON result."""
    args = "".join(f", {k} := %({k})s" for k in kw)
    row = as_user(conn, person).one(f"select public.create_api_key(org_id := %(org)s, name := %(name)s{args}) as k",
                                    {"org": org, "name": name, **kw})
    assert row and row["k"]["key"], "create_api_key returned the plaintext key"
    return row["k"]


def begin(conn, request_id: str, model: str = "gpt-4o-mini", prompt_tokens_bound: int = 1000, *,
          key: str | None = None, **kw) -> dict:
    """public.begin_chat_request as superuser; `key` is the plaintext, hashed in SQL."""
    params = {"request_id": request_id, "model": model, "prompt_tokens_bound": prompt_tokens_bound, **kw}
    named = [f"{k} := %({k})s" for k in params]
    if key is not None:
        named.append("key_hash := sha256(convert_to(%(key)s, 'UTF8'))")
        params["key"] = key
    return scalar(conn, f"select public.begin_chat_request({', '.join(named)})", params)


def finish(conn, request_id: str, org, model: str = "gpt-4o-mini", *, status: str = "succeeded",
           http_status: int = 200, endpoint: str = "/v1/chat/completions", **kw) -> dict:
    params = {"request_id": request_id, "status": status, "http_status": http_status, "endpoint": endpoint,
              "org_id": org, "model": model, **kw}
    named = ", ".join(f"{k} := %({k})s" for k in params)
    return scalar(conn, f"select public.finish_chat_request({named})", params)


def price(conn, model: str) -> dict:
    p = one(conn, "select * from public.model_prices where model = %s", (model,))
    assert p is not None, f"model {model} has a price"
    return p


def credits_per_usd(conn) -> Decimal:
    return Decimal(scalar(conn, "select value from private.app_settings where key = 'credits_per_usd'"))


def ceil(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_CEILING))
