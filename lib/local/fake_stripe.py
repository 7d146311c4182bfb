"""Stripe events as Stripe sends them, for the test suite, the benchmarks and local
replays: the documented example payloads in `stripe_payloads/` (where each came from is
in its README), deep-copied and given fresh ids, times and metadata, then signed as
Stripe signs them. Also `ConnDatabase`: lib.core.db's `Database` on one connection."""
from __future__ import annotations

import copy
import functools
import itertools
import json
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from lib.billing.signature import sign_header

PAYLOADS = Path(__file__).resolve().parent / "stripe_payloads"
STRIPE_API = "https://api.stripe.com"
NOW = int(time.time())
DAY = 86400
PERIOD = (NOW - 2 * DAY, NOW + 28 * DAY)
NEXT_PERIOD = (NOW + 28 * DAY, NOW + 58 * DAY)

PRO_PRODUCT, PRO_PRICE = "prod_TollPro", "price_TollProMonthly"
ENT_PRODUCT, ENT_PRICE = "prod_TollEnterprise", "price_TollEnterpriseMonthly"
PACK_PRODUCT, PACK_PRICE = "prod_TollCredits", "price_TollCredits5k"
PACK_CREDITS, PACK_EXPIRE_DAYS = 5000, 90
_ids = itertools.count(1)


@functools.cache
def _read(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def load_fixture(name: str) -> dict[str, Any]:
    """A fixture event, deep-copied so a test can change it freely."""
    return copy.deepcopy(_read(name))


def new_id(prefix: str) -> str:
    return f"{prefix}_T{next(_ids):06d}{time.time_ns() % 10**9:09d}"


def event(fixture: str, *, type: str | None = None, created: int = NOW, event_id: str | None = None,
          **fields: Any) -> dict[str, Any]:
    """The fixture's event with a fresh id, this `created`, and data.object fields set."""
    evt = load_fixture(fixture)
    evt.update(id=event_id or new_id("evt"), created=created, type=type or evt["type"])
    evt["data"]["object"].update(fields)
    return evt


def product_event(product_id: str, *, plan: str | None = None, credits: int | None = None, active: bool = True,
                  created: int = NOW - 90 * DAY, type: str = "product.created") -> dict[str, Any]:
    meta = {"plan": plan} if plan else {}
    if credits:
        meta |= {"credits": str(credits), "credits_expire_days": str(PACK_EXPIRE_DAYS)}
    return event("product.created", type=type, created=created, id=product_id, active=active, metadata=meta,
                 name=f"Tollbooth {plan or 'credits'}")


def price_event(price_id: str, product_id: str, *, unit_amount: int = 4900, recurring: bool = True,
                active: bool = True, created: int = NOW - 90 * DAY, type: str = "price.created") -> dict[str, Any]:
    evt = event("price.created", type=type, created=created, id=price_id, product=product_id,
                unit_amount=unit_amount, unit_amount_decimal=str(unit_amount), active=active)
    if not recurring:
        evt["data"]["object"].update(type="one_time", recurring=None)
    return evt


def customer_event(customer_id: str, *, org_id: Any = None, email: str = "billing@example.test",
                   created: int = NOW - 3 * DAY, type: str = "customer.created") -> dict[str, Any]:
    meta = {"org_id": str(org_id)} if org_id else {}
    return event("customer.created", type=type, created=created, id=customer_id, email=email, metadata=meta)


def _basil_subscription(evt: dict[str, Any], price_id: str, product_id: str, period: tuple[int, int]) -> None:
    item = evt["data"]["object"]["items"]["data"][0]
    item.update(current_period_start=period[0], current_period_end=period[1])
    item["price"].update(id=price_id, product=product_id)
    item["plan"].update(id=price_id, product=product_id)


def subscription_event(sub_id: str, customer_id: str, *, price: tuple[str, str] = (PRO_PRICE, PRO_PRODUCT),
                       status: str = "active", created: int = NOW - 2 * DAY, period: tuple[int, int] = PERIOD,
                       org_id: Any = None, type: str = "customer.subscription.updated", layout: str = "basil",
                       **fields: Any) -> dict[str, Any]:
    """A subscription event in the basil layout (period on the item) or the pre-basil one."""
    meta = {"org_id": str(org_id)} if org_id else {}
    fixture = ("customer.subscription.created.basil" if layout == "basil"
               else "customer.subscription.updated.pre_basil")
    evt = event(fixture, type=type, created=created, id=sub_id, customer=customer_id, status=status,
                metadata=meta, **fields)
    obj = evt["data"]["object"]
    obj["created"] = PERIOD[0]
    if layout == "basil":
        _basil_subscription(evt, *price, period)
    else:
        obj.update(current_period_start=period[0], current_period_end=period[1], trial_start=None, trial_end=None)
        for part in (obj["items"]["data"][0]["price"], obj["items"]["data"][0]["plan"], obj["plan"]):
            part.update(id=price[0], product=price[1])
    return evt


def invoice_event(invoice_id: str, customer_id: str, sub_id: str | None, *, status: str = "paid",
                  billing_reason: str = "subscription_create", period: tuple[int, int] = PERIOD,
                  price: tuple[str, str] = (PRO_PRICE, PRO_PRODUCT), created: int = NOW - 2 * DAY,
                  type: str = "invoice.paid", layout: str = "basil", amount: int = 4900) -> dict[str, Any]:
    paid = amount if status == "paid" else 0
    evt = event(f"invoice.paid.{layout}", type=type, created=created, id=invoice_id, customer=customer_id,
                status=status, billing_reason=billing_reason, amount_due=amount, amount_paid=paid,
                amount_remaining=amount - paid)
    obj = evt["data"]["object"]
    line = obj["lines"]["data"][0]
    line["period"] = {"start": period[0], "end": period[1]}
    if layout == "basil":
        obj["parent"]["subscription_details"]["subscription"] = sub_id
        line["parent"]["subscription_item_details"]["subscription"] = sub_id
        line["pricing"]["price_details"] = {"price": price[0], "product": price[1]}
    else:
        obj["subscription"] = line["subscription"] = sub_id
        line["price"].update(id=price[0], product=price[1])
    return evt


def payment_intent_event(pi_id: str, customer_id: str, *, failed: bool = False, amount: int = 4900,
                         created: int = NOW - 2 * DAY) -> dict[str, Any]:
    fixture = "payment_intent.payment_failed" if failed else "payment_intent.succeeded"
    return event(fixture, created=created, id=pi_id, customer=customer_id, amount=amount,
                 amount_received=0 if failed else amount)


def checkout_event(session_id: str, *, org_id: Any, customer_id: str, mode: str = "subscription",
                   subscription_id: str | None = None, metadata: dict[str, str] | None = None,
                   payment_status: str = "paid", created: int = NOW - 2 * DAY) -> dict[str, Any]:
    fixture = f"checkout.session.completed.{mode}"
    return event(fixture, created=created, id=session_id, customer=customer_id,
                 client_reference_id=str(org_id) if org_id else None, subscription=subscription_id,
                 metadata=metadata or {}, payment_status=payment_status)


def catalogue() -> list[dict[str, Any]]:
    """Pro and enterprise plans and a 5,000-credit pack, as product and price events."""
    return [
        product_event(PRO_PRODUCT, plan="pro"), price_event(PRO_PRICE, PRO_PRODUCT),
        product_event(ENT_PRODUCT, plan="enterprise"), price_event(ENT_PRICE, ENT_PRODUCT, unit_amount=49900),
        product_event(PACK_PRODUCT, credits=PACK_CREDITS),
        price_event(PACK_PRICE, PACK_PRODUCT, unit_amount=1000, recurring=False),
    ]


class ConnDatabase:
    """lib.core.db's Database interface on one connection (inside whatever transaction it has open)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        args = args or {}
        named = ", ".join(f"{k} := %({k})s" for k in args)
        params = {k: Jsonb(v) if isinstance(v, (dict, list)) else v for k, v in args.items()}
        row = self.conn.execute(f"select public.{fn}({named})", params).fetchone()
        return row[0] if row else None

    def ping(self) -> None:
        self.conn.execute("select 1")


def signed(evt: dict[str, Any] | bytes, secret: str, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The raw body and the headers Stripe would send it with."""
    raw = evt if isinstance(evt, bytes) else json.dumps(evt).encode()
    return raw, {"Stripe-Signature": sign_header(raw, secret, timestamp), "Content-Type": "application/json"}
