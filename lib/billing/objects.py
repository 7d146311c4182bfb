"""Stripe objects as pydantic models, each normalized to what its SQL sync function
stores (`private.sync_<kind>`): ids of expandable fields, integers in minor units,
timestamps as epoch seconds, and the organization a value names (a uuid) or None.

Both payload layouts are read: before 2025-03-31.basil a subscription carries its
period (`current_period_start/end`) and an invoice its `subscription`; from basil on
the period is on each subscription item and the invoice's subscription is under
`parent.subscription_details` (and each line's under
`parent.subscription_item_details`, its price under `pricing.price_details`).
"""
from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Metadata = Annotated[dict[str, str], BeforeValidator(lambda v: v or {})]
Ref = str | dict[str, Any] | None  # an expandable field: an id, or the expanded object
SubscriptionStatus = Literal["incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled",
                             "unpaid", "paused"]
FINAL_SUBSCRIPTION_STATUSES = frozenset({"canceled", "incomplete_expired"})
_DIGITS = re.compile(r"^\d{1,15}$")


def ref(value: Ref) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value


def org_ref(value: str | None) -> str | None:
    """The organization id a Stripe string names, when it is a uuid."""
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def count(value: str | None) -> int | None:
    """A whole number written in metadata, or None."""
    return int(value) if value and _DIGITS.match(value) else None


class StripeModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Product(StripeModel):
    object: Literal["product"] = "product"
    id: str = Field(min_length=1)
    active: bool = True
    name: str | None = None
    description: str | None = None
    metadata: Metadata = {}
    created: int | None = None
    deleted: bool = False

    def normalized(self) -> dict[str, Any]:
        return {"id": self.id, "active": self.active, "name": self.name, "description": self.description,
                "plan": self.metadata.get("plan"), "metadata": self.metadata, "created": self.created,
                "deleted": self.deleted}


class Recurring(StripeModel):
    interval: str
    interval_count: int = 1


class Price(StripeModel):
    object: Literal["price"] = "price"
    id: str = Field(min_length=1)
    product: Ref
    active: bool = True
    currency: str
    unit_amount: int | None = None
    type: Literal["one_time", "recurring"]
    recurring: Recurring | None = None
    lookup_key: str | None = None
    nickname: str | None = None
    metadata: Metadata = {}
    created: int | None = None
    deleted: bool = False

    def normalized(self) -> dict[str, Any]:
        return {"id": self.id, "product_id": ref(self.product), "active": self.active, "currency": self.currency,
                "unit_amount": self.unit_amount, "type": self.type,
                "recurring_interval": self.recurring.interval if self.recurring else None,
                "recurring_interval_count": self.recurring.interval_count if self.recurring else None,
                "lookup_key": self.lookup_key, "nickname": self.nickname, "metadata": self.metadata,
                "created": self.created, "deleted": self.deleted}


class Customer(StripeModel):
    object: Literal["customer"] = "customer"
    id: str = Field(pattern=r"^cus_")
    email: str | None = None
    name: str | None = None
    metadata: Metadata = {}
    created: int | None = None
    deleted: bool = False

    def normalized(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "name": self.name, "metadata": self.metadata,
                "created": self.created, "deleted": self.deleted, "org_id": org_ref(self.metadata.get("org_id"))}


def _price_ids(price: Ref, plan: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(price id, product id) of an item or line: its price, or its legacy plan."""
    source = price if price is not None else plan
    if isinstance(source, dict):
        return source.get("id"), ref(source.get("product"))
    return source, None


class SubscriptionItem(StripeModel):
    price: Ref = None
    plan: dict[str, Any] | None = None
    quantity: int | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None


class ItemList(StripeModel):
    data: list[SubscriptionItem] = []


class Subscription(StripeModel):
    object: Literal["subscription"] = "subscription"
    id: str = Field(pattern=r"^sub_")
    customer: Ref
    status: SubscriptionStatus
    items: ItemList = ItemList()
    cancel_at_period_end: bool = False
    cancel_at: int | None = None
    canceled_at: int | None = None
    ended_at: int | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None
    trial_start: int | None = None
    trial_end: int | None = None
    created: int | None = None
    metadata: Metadata = {}

    def normalized(self) -> dict[str, Any]:
        first = self.items.data[0] if self.items.data else SubscriptionItem()
        items = []
        for item in self.items.data:
            price_id, product_id = _price_ids(item.price, item.plan)
            items.append({"price_id": price_id, "product_id": product_id, "quantity": item.quantity})
        return {
            "id": self.id, "customer_id": ref(self.customer), "status": self.status, "items": items,
            "cancel_at_period_end": self.cancel_at_period_end, "cancel_at": self.cancel_at,
            "canceled_at": self.canceled_at, "ended_at": self.ended_at,
            "current_period_start": self.current_period_start if self.current_period_start is not None
            else first.current_period_start,
            "current_period_end": self.current_period_end if self.current_period_end is not None
            else first.current_period_end,
            "trial_start": self.trial_start, "trial_end": self.trial_end, "created": self.created,
            "metadata": self.metadata, "org_id": org_ref(self.metadata.get("org_id")),
        }


class Period(StripeModel):
    start: int | None = None
    end: int | None = None


class InvoiceLine(StripeModel):
    type: str | None = None
    subscription: Ref = None
    proration: bool = False
    period: Period = Period()
    price: Ref = None
    plan: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None
    parent: dict[str, Any] | None = None

    def subscription_id(self) -> str | None:
        details = (self.parent or {}).get("subscription_item_details") or {}
        return ref(self.subscription) or ref(details.get("subscription"))

    def is_proration(self) -> bool:
        details = (self.parent or {}).get("subscription_item_details") or {}
        return self.proration or bool(details.get("proration"))

    def price_ids(self) -> tuple[str | None, str | None]:
        details = (self.pricing or {}).get("price_details") or {}
        if details:
            return ref(details.get("price")), ref(details.get("product"))
        return _price_ids(self.price, self.plan)


class LineList(StripeModel):
    data: list[InvoiceLine] = []


class Invoice(StripeModel):
    object: Literal["invoice"] = "invoice"
    id: str = Field(min_length=1)
    customer: Ref = None
    status: str | None = None
    amount_due: int = 0
    amount_paid: int = 0
    currency: str | None = None
    billing_reason: str | None = None
    description: str | None = None
    hosted_invoice_url: str | None = None
    created: int | None = None
    period_start: int | None = None
    period_end: int | None = None
    subscription: Ref = None
    parent: dict[str, Any] | None = None
    lines: LineList = LineList()

    def normalized(self) -> dict[str, Any]:
        details = (self.parent or {}).get("subscription_details") or {}
        sub_lines = [line for line in self.lines.data if line.subscription_id() and not line.is_proration()]
        line = max(sub_lines, key=lambda x: x.period.end or 0) if sub_lines else None
        price_id, product_id = line.price_ids() if line else (None, None)
        return {
            "id": self.id, "customer_id": ref(self.customer),
            "subscription_id": ref(self.subscription) or ref(details.get("subscription"))
            or (line.subscription_id() if line else None),
            "status": self.status, "amount": self.amount_due, "amount_paid": self.amount_paid,
            "currency": self.currency, "billing_reason": self.billing_reason, "description": self.description,
            "hosted_invoice_url": self.hosted_invoice_url, "created": self.created,
            "period_start": line.period.start if line else self.period_start,
            "period_end": line.period.end if line else self.period_end,
            "price_id": price_id, "product_id": product_id,
        }


class PaymentError(StripeModel):
    message: str | None = None
    code: str | None = None


class PaymentIntent(StripeModel):
    object: Literal["payment_intent"] = "payment_intent"
    id: str = Field(pattern=r"^pi_")
    customer: Ref = None
    status: str
    amount: int
    amount_received: int = 0
    currency: str | None = None
    description: str | None = None
    invoice: Ref = None
    last_payment_error: PaymentError | None = None
    created: int | None = None

    def normalized(self) -> dict[str, Any]:
        error = self.last_payment_error
        return {"id": self.id, "customer_id": ref(self.customer), "status": self.status, "amount": self.amount,
                "amount_paid": self.amount_received, "currency": self.currency, "description": self.description,
                "failure_message": (error.message or error.code) if error else None, "created": self.created}


class CustomerDetails(StripeModel):
    email: str | None = None


class CheckoutSession(StripeModel):
    object: Literal["checkout.session"] = "checkout.session"
    id: str = Field(pattern=r"^cs_")
    mode: Literal["payment", "subscription", "setup"]
    status: str | None = None
    payment_status: str | None = None
    customer: Ref = None
    customer_details: CustomerDetails | None = None
    customer_email: str | None = None
    client_reference_id: str | None = None
    subscription: Ref = None
    payment_intent: Ref = None
    amount_total: int | None = None
    currency: str | None = None
    created: int | None = None
    metadata: Metadata = {}

    def normalized(self) -> dict[str, Any]:
        meta = self.metadata
        return {
            "id": self.id, "mode": self.mode, "status": self.status, "payment_status": self.payment_status,
            "customer_id": ref(self.customer), "subscription_id": ref(self.subscription),
            "payment_intent_id": ref(self.payment_intent),
            "email": (self.customer_details.email if self.customer_details else None) or self.customer_email,
            "org_id": org_ref(self.client_reference_id) or org_ref(meta.get("org_id")),
            "price_id": meta.get("price_id"), "quantity": count(meta.get("quantity")),
            "credits": count(meta.get("credits")), "credits_expire_days": count(meta.get("credits_expire_days")),
            "amount_total": self.amount_total, "currency": self.currency, "created": self.created,
        }


MODELS: dict[str, type[StripeModel]] = {
    "product": Product, "price": Price, "customer": Customer, "subscription": Subscription, "invoice": Invoice,
    "payment_intent": PaymentIntent, "checkout_session": CheckoutSession,
}


def normalize(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The columns `private.sync_<kind>` stores, or pydantic.ValidationError."""
    return MODELS[kind].model_validate(obj).normalized()  # type: ignore[attr-defined]
