"""What the signed-in routes do with Stripe: start a Checkout Session, open the Billing
Portal, and re-fetch an organization's Stripe state (the "success page" refresh).

Each first asks the database what the user may do (`public.stripe_billing_context`:
the same rules PostgREST applies to their JWT), then talks to Stripe, then stores
what Stripe answered through the same SQL sync functions the webhook uses.
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlsplit

import stripe
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from lib.billing import api
from lib.billing.events import sync_objects
from lib.core.db import Database
from lib.core.errors import Conflict


def _absolute_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


RedirectUrl = Annotated[str, Field(max_length=2048), AfterValidator(_absolute_url)]


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    price_id: str = Field(min_length=1, max_length=255, pattern=r"^\S+$")
    org_id: uuid.UUID
    success_url: RedirectUrl
    cancel_url: RedirectUrl
    quantity: int = Field(default=1, ge=1, le=1000)


class PortalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org_id: uuid.UUID
    return_url: RedirectUrl | None = None


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org_id: uuid.UUID


def billing_context(db: Database, org_id: uuid.UUID, user_id: uuid.UUID, min_role: str,
                    price_id: str | None = None, quantity: int = 1) -> dict[str, Any]:
    """What the user may do with the organization's billing; with a price, also what
    `quantity` units of it buy (`checkout_credits`, `credits_expire_days`: SQL computes
    them, null unless the price is a credit pack)."""
    return db.rpc("stripe_billing_context", {"org_id": str(org_id), "user_id": str(user_id),
                                             "min_role": min_role, "price_id": price_id,
                                             "quantity": quantity})


def _require_customer(ctx: dict[str, Any]) -> str:
    if not ctx.get("customer_id"):
        raise Conflict("this organization has no Stripe customer yet; start a checkout first", type="no_customer")
    return ctx["customer_id"]


def _ensure_customer(db: Database, client: stripe.StripeClient, ctx: dict[str, Any]) -> str:
    if ctx.get("customer_id"):
        return ctx["customer_id"]
    customer = api.create_customer(client, org_id=ctx["org_id"], email=ctx.get("email"), name=ctx["org_name"])
    sync_objects(db, "customer", [customer])
    return customer["id"]


def start_checkout(db: Database, client: stripe.StripeClient, user_id: uuid.UUID,
                   req: CheckoutRequest) -> dict[str, Any]:
    """Owners and admins: a Checkout Session for an active price (subscription or payment
    mode from the price's type), paid by the organization's customer (created once)."""
    ctx = billing_context(db, req.org_id, user_id, "admin", req.price_id, req.quantity)
    price, org = ctx["price"], ctx["org_id"]
    mode = "subscription" if price["type"] == "recurring" else "payment"
    if mode == "subscription" and ctx["billing_status"] in ("active", "past_due"):
        raise Conflict("this organization already has a subscription; change it in the billing portal",
                       type="already_subscribed")
    customer = _ensure_customer(db, client, ctx)
    metadata = {"org_id": org, "price_id": req.price_id, "quantity": str(req.quantity)}
    # the pack's credits as SQL computed them (private.pack_credits), verbatim
    if ctx["checkout_credits"] is not None:
        metadata["credits"] = str(ctx["checkout_credits"])
        if ctx["credits_expire_days"] is not None:
            metadata["credits_expire_days"] = str(ctx["credits_expire_days"])
    params: dict[str, Any] = {
        "mode": mode, "customer": customer, "client_reference_id": org,
        "line_items": [{"price": req.price_id, "quantity": req.quantity}],
        "success_url": req.success_url, "cancel_url": req.cancel_url, "metadata": metadata,
        "subscription_data" if mode == "subscription" else "payment_intent_data": {"metadata": {"org_id": org}},
    }
    session = api.create_checkout_session(client, params)
    return {"id": session["id"], "url": session["url"], "mode": mode, "customer_id": customer}


def open_portal(db: Database, client: stripe.StripeClient, user_id: uuid.UUID, req: PortalRequest) -> dict[str, Any]:
    """Owners and admins: a Billing Portal session for the organization's customer."""
    customer = _require_customer(billing_context(db, req.org_id, user_id, "admin"))
    session = api.create_portal_session(client, customer, req.return_url)
    return {"url": session["url"]}


def refresh_org(db: Database, client: stripe.StripeClient, user_id: uuid.UUID, req: SyncRequest) -> dict[str, Any]:
    """Members: re-fetch the organization's customer and all its subscriptions and store
    them as true now (the page Checkout returns to calls this)."""
    customer_id = _require_customer(billing_context(db, req.org_id, user_id, "member"))
    sync_objects(db, "customer", [api.retrieve_customer(client, customer_id)])
    subscriptions: list[str] = []
    for page in api.list_pages(client, "subscriptions", {"customer": customer_id, "status": "all"}):
        sync_objects(db, "subscription", page)
        subscriptions += [s["id"] for s in page]
    ctx = billing_context(db, req.org_id, user_id, "member")
    return {"org_id": ctx["org_id"], "customer_id": customer_id, "subscriptions": subscriptions,
            "plan_id": ctx["plan_id"], "billing_status": ctx["billing_status"]}
