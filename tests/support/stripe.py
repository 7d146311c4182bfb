"""Stripe test helpers: the event builders of lib.local.fake_stripe (real payloads,
deep-copied, given this test's ids, times and metadata), signed with the test secret,
and applied either over HTTP or straight through lib.billing.events on the test's
connection."""
from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg

from lib.billing.events import apply_event, parse_event
from lib.local import fake_stripe
from lib.local.fake_stripe import (
    DAY,
    ENT_PRICE,
    ENT_PRODUCT,
    NEXT_PERIOD,
    NOW,
    PACK_CREDITS,
    PACK_EXPIRE_DAYS,
    PACK_PRICE,
    PACK_PRODUCT,
    PERIOD,
    PRO_PRICE,
    PRO_PRODUCT,
    STRIPE_API,
    ConnDatabase,
    catalogue,
    checkout_event,
    customer_event,
    event,
    invoice_event,
    load_fixture,
    new_id,
    payment_intent_event,
    price_event,
    product_event,
    subscription_event,
)
from tests.support.secrets import JWT_SECRET, STRIPE_WEBHOOK_SECRET


def apply(conn: psycopg.Connection, *events: dict[str, Any]) -> list[dict[str, Any]]:
    """Applies events as the webhook does after verification (no HTTP)."""
    db = ConnDatabase(conn)
    return [apply_event(db, parse_event(json.dumps(e).encode())) for e in events]


def signed(evt: dict[str, Any] | bytes, secret: str = STRIPE_WEBHOOK_SECRET,
           timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    return fake_stripe.signed(evt, secret, timestamp)


def post_event(base: str, evt: dict[str, Any] | bytes, **kw: Any) -> httpx.Response:
    raw, headers = signed(evt, **kw)
    return httpx.post(f"{base}/api/stripe/webhook", content=raw, headers=headers, timeout=30)


def server_env(dsn: str, **extra: str | None) -> dict[str, str | None]:
    return {"DATABASE_URL": dsn, "SUPABASE_URL": None, "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "STRIPE_SECRET_KEY": None, "SUPABASE_JWT_SECRET": JWT_SECRET, **extra}


def org_state(conn: psycopg.Connection, org_id: Any) -> dict[str, Any]:
    """What billing decides about an organization: plan, status, customer, balance."""
    row = conn.execute(
        "select o.plan_id, o.billing_status::text, o.stripe_customer_id, a.balance from public.organizations o "
        "left join public.credit_accounts a on a.org_id = o.id where o.id = %s", (org_id,)).fetchone()
    return dict(zip(("plan_id", "billing_status", "stripe_customer_id", "balance"), row))


def role_of(conn: psycopg.Connection, person: Any) -> str:
    return conn.execute("select role::text from public.profiles where id = %s", (person.id,)).fetchone()[0]


MIRROR_TABLES = ("public.stripe_products", "public.stripe_prices", "public.stripe_customers",
                 "public.subscriptions", "public.payments")


def mirror(conn: psycopg.Connection, *tables: str) -> dict[str, list[tuple]]:
    """The mirrored rows without bookkeeping columns (updated_at), for order comparisons."""
    out = {}
    for table in tables or MIRROR_TABLES:
        cols = [r[0] for r in conn.execute(
            "select column_name from information_schema.columns where table_schema || '.' || table_name = %s "
            "and column_name <> 'updated_at' order by ordinal_position", (table,))]
        out[table] = conn.execute(f"select {', '.join(cols)} from {table} order by id").fetchall()
    return out
