"""Usage events and rollups as the usage tests drive them: `add_event` writes one event
as superuser (any day, any dimensions), `truth` sums the raw events exactly as the
rollup groups them, `rolled` reads usage_daily the same way, so a test asserts
`rolled(conn) == truth(conn)`."""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import psycopg

DIMS = "org_id, day, hour, project_id, api_key_id, user_id, model, kind, status_class"
MEASURES = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens",
            "total_tokens", "credits", "cost_usd")

_TRUTH = """
select e.org_id, (e.created_at at time zone 'UTC')::date as day,
       extract(hour from e.created_at at time zone 'UTC')::smallint as hour,
       e.project_id, e.api_key_id, e.user_id, e.model, e.kind,
       case when e.status = 'succeeded' then 'ok' else 'error' end as status_class,
       count(*), sum(prompt_tokens), sum(cached_tokens), sum(completion_tokens), sum(reasoning_tokens),
       sum(total_tokens), sum(credits), sum(cost_usd)
from public.usage_events e {where} group by 1, 2, 3, 4, 5, 6, 7, 8, 9
"""


def add_event(conn: psycopg.Connection, org, *, at: dt.datetime | None = None, model: str = "gpt-4o-mini",
              status: str = "succeeded", prompt: int = 100, completion: int = 20, credits: int = 5,
              cost: str = "0.000123", api_key_id=None, project_id=None, user_id=None, kind: str = "chat",
              cached: int = 0, reasoning: int = 0) -> str:
    """One usage event written as superuser; returns its request id."""
    rid = f"req_{uuid.uuid4().hex}"
    conn.execute(
        "insert into public.usage_events (created_at, org_id, user_id, api_key_id, project_id, kind, model, "
        "prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens, cost_usd, credits, "
        "request_id, status) values (coalesce(%s, now()), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (at, org, user_id, api_key_id, project_id, kind, model, prompt, completion, prompt + completion, cached,
         reasoning, Decimal(cost), credits, rid, status))
    return rid


def _keyed(rows) -> dict:
    return {tuple(r[:9]): tuple(int(x) if not isinstance(x, Decimal) else x.normalize() for x in r[9:])
            for r in rows}


def truth(conn: psycopg.Connection, where: str = "", params=None) -> dict:
    """The raw events summed by the rollup's key (what usage_daily must hold)."""
    return _keyed(conn.execute(_TRUTH.format(where=where), params).fetchall())


def rolled(conn: psycopg.Connection, where: str = "", params=None) -> dict:
    """usage_daily by the same key."""
    return _keyed(conn.execute(f"select {DIMS}, {', '.join(MEASURES)} from public.usage_daily {where}",
                               params).fetchall())


def rollup(conn: psycopg.Connection, wait: bool = False) -> dict:
    return conn.execute("select public.usage_rollup(wait := %s)", (wait,)).fetchone()[0]
