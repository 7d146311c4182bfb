"""Stripe events: the envelope, the registry of handled types, and their application.

`HANDLERS` maps every event type we subscribe to (`ENABLED_EVENTS`) to the kind of
object it carries and whether it deletes it. Applying an event is one SQL call,
`public.stripe_apply_event`, which records the event id and makes every change in
one transaction; other types are recorded as ignored. An event that cannot be applied
is recorded as failed (its changes rolled back) and answered 500, so Stripe retries.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lib.billing.objects import FINAL_SUBSCRIPTION_STATUSES, normalize
from lib.core.db import Database
from lib.core.errors import BadRequest, TollboothError, Unprocessable
from lib.core.http import validation_message
from lib.core.log import get_logger

log = get_logger("stripe")

ENABLED_EVENTS: tuple[str, ...] = (
    "product.created", "product.updated", "product.deleted",
    "price.created", "price.updated", "price.deleted",
    "customer.created", "customer.updated", "customer.deleted",
    "checkout.session.completed", "checkout.session.async_payment_succeeded",
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "customer.subscription.paused", "customer.subscription.resumed",
    "invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed",
    "payment_intent.succeeded", "payment_intent.payment_failed",
)


@dataclass(frozen=True)
class Handler:
    kind: str  # the object kind private.stripe_sync stores
    deletes: bool = False


KINDS = frozenset({"product", "price", "customer", "checkout_session", "subscription", "invoice", "payment_intent"})

# written out, not derived from ENABLED_EVENTS, so that the check below can fail
HANDLERS: dict[str, Handler] = {
    "product.created": Handler("product"),
    "product.updated": Handler("product"),
    "product.deleted": Handler("product", deletes=True),
    "price.created": Handler("price"),
    "price.updated": Handler("price"),
    "price.deleted": Handler("price", deletes=True),
    "customer.created": Handler("customer"),
    "customer.updated": Handler("customer"),
    "customer.deleted": Handler("customer", deletes=True),
    "checkout.session.completed": Handler("checkout_session"),
    "checkout.session.async_payment_succeeded": Handler("checkout_session"),
    # a deleted subscription is a final state of the object, stored like any other
    "customer.subscription.created": Handler("subscription"),
    "customer.subscription.updated": Handler("subscription"),
    "customer.subscription.deleted": Handler("subscription"),
    "customer.subscription.paused": Handler("subscription"),
    "customer.subscription.resumed": Handler("subscription"),
    "invoice.paid": Handler("invoice"),
    "invoice.payment_succeeded": Handler("invoice"),
    "invoice.payment_failed": Handler("invoice"),
    "payment_intent.succeeded": Handler("payment_intent"),
    "payment_intent.payment_failed": Handler("payment_intent"),
}


def check_registry(handlers: dict[str, Handler], enabled: tuple[str, ...]) -> None:
    """Every event we subscribe to has a handler, every handler an event we subscribe
    to, and every handler stores a kind SQL knows; raised at import (not an assert)."""
    unhandled, unsubscribed = set(enabled) - set(handlers), set(handlers) - set(enabled)
    unknown = {t: h.kind for t, h in handlers.items() if h.kind not in KINDS}
    if unhandled or unsubscribed or unknown:
        raise RuntimeError(f"Stripe handler registry out of step: subscribed without a handler {sorted(unhandled)}, "
                           f"handled without a subscription {sorted(unsubscribed)}, unknown kinds {unknown}")


check_registry(HANDLERS, ENABLED_EVENTS)


class EventData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    object: dict[str, Any]


class StripeEvent(BaseModel):
    """A v1 snapshot event (`object: "event"`); thin `v2.core.event`s are refused."""
    model_config = ConfigDict(extra="ignore")
    id: str = Field(pattern=r"^evt_\w+$", max_length=255)
    object: str
    type: str = Field(min_length=1, max_length=255)
    created: int
    livemode: bool = False
    api_version: str | None = None
    data: EventData


def parse_event(raw: bytes) -> StripeEvent:
    """The verified body as an event, or BadRequest saying why it is not one."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", type="invalid_event") from exc
    if not isinstance(body, dict):
        raise BadRequest("body is not a Stripe event: expected a JSON object", type="invalid_event")
    try:
        event = StripeEvent.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(f"body is not a Stripe event: {validation_message(exc)}", type="invalid_event") from exc
    if event.object != "event":
        raise BadRequest(f"body is not a Stripe v1 event (object is {event.object!r}); thin events are not "
                         "supported on this endpoint", type="invalid_event")
    return event


def _envelope(event: StripeEvent) -> dict[str, Any]:
    return {"event_id": event.id, "event_type": event.type, "created": event.created,
            "livemode": event.livemode, "api_version": event.api_version}


def record_failure(db: Database, event: StripeEvent, error: str) -> None:
    """Best effort: the failure is visible in stripe_events; the response says it anyway."""
    try:
        db.rpc("stripe_record_event_failure", {
            **_envelope(event), "error": error, "object_id": event.data.object.get("id")})
    except TollboothError:
        log.exception("could not record the failure of Stripe event %s", event.id)


Fetch = Callable[[str], dict[str, Any]]


def apply_event(db: Database, event: StripeEvent, *, fetch_subscription: Fetch | None = None) -> dict[str, Any]:
    """Applies one verified event (one SQL transaction). `fetch_subscription`, when
    given, replaces a subscription that is not final by its current state from the API."""
    handler = HANDLERS.get(event.type)
    if handler is None:
        return db.rpc("stripe_apply_event", _envelope(event))
    obj, fetched = event.data.object, False
    try:
        data = normalize(handler.kind, obj)
        if fetch_subscription and handler.kind == "subscription" and data["status"] not in FINAL_SUBSCRIPTION_STATUSES:
            obj, fetched = fetch_subscription(data["id"]), True
            data = normalize("subscription", obj)
    except ValidationError as exc:
        message = f"{event.type} {event.id}: data.object is not a {handler.kind}: {validation_message(exc)}"
        record_failure(db, event, message)
        raise Unprocessable(message, type="invalid_event_object") from exc
    except TollboothError as err:
        record_failure(db, event, f"fetching the subscription failed: {err.message}")
        raise
    if handler.deletes:
        data["deleted"] = True
    try:
        return db.rpc("stripe_apply_event", {**_envelope(event), "kind": handler.kind, "data": data,
                                             "object": obj, "fetched": fetched})
    except TollboothError as err:
        record_failure(db, event, err.message)
        if err.status >= 500:
            raise
        raise TollboothError(f"event {event.id} could not be applied ({err.message}); nothing was changed and "
                             "Stripe's retry will process it again", type="event_failed") from err


def sync_objects(db: Database, kind: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """Stores objects fetched from the API now (API sync, backfill): one transaction."""
    items = [{"data": normalize(kind, obj), "object": obj} for obj in objects]
    return db.rpc("stripe_sync_objects", {"kind": kind, "objects": items})
