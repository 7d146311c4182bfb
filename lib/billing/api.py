"""Stripe's HTTP API through stripe-python on its httpx client (so respx can fake it),
and the one mapping of its errors: Stripe refusing or failing is a 502, a timeout a
504, both naming what Stripe said. Every object comes back as a plain dict.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import stripe

from lib.core.config import Settings
from lib.core.errors import UpstreamError, UpstreamTimeout

T = TypeVar("T")
PAGE_SIZE = 100


@functools.lru_cache(maxsize=4)
def _client(secret_key: str, max_retries: int) -> stripe.StripeClient:
    return stripe.StripeClient(secret_key, http_client=stripe.HTTPXClient(allow_sync_methods=True),
                               max_network_retries=max_retries)


def make_client(settings: Settings, *, max_retries: int = 2) -> stripe.StripeClient:
    """The client for STRIPE_SECRET_KEY (503 naming it when unset)."""
    return _client(settings.require("stripe_secret_key"), max_retries)


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs one Stripe call, mapping its failures to 502/504."""
    try:
        return fn(*args, **kwargs)
    except stripe.APIConnectionError as exc:
        raise UpstreamTimeout(f"Stripe did not answer: {exc.user_message or exc}") from exc
    except stripe.StripeError as exc:
        raise UpstreamError(f"Stripe refused the request ({exc.http_status}): {exc.user_message or exc}",
                            type="stripe_error") from exc


def as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict(for_json=True) if hasattr(obj, "to_dict") else dict(obj)


def retrieve_subscription(client: stripe.StripeClient, subscription_id: str) -> dict[str, Any]:
    return as_dict(call(client.v1.subscriptions.retrieve, subscription_id))


def retrieve_customer(client: stripe.StripeClient, customer_id: str) -> dict[str, Any]:
    return as_dict(call(client.v1.customers.retrieve, customer_id))


def create_customer(client: stripe.StripeClient, *, org_id: str, email: str | None, name: str) -> dict[str, Any]:
    """One customer per organization: the idempotency key makes concurrent checkouts share it."""
    params: dict[str, Any] = {"name": name, "metadata": {"org_id": org_id}}
    if email:
        params["email"] = email
    return as_dict(call(client.v1.customers.create, params=params,
                        options={"idempotency_key": f"tollbooth-customer-{org_id}"}))


def create_checkout_session(client: stripe.StripeClient, params: dict[str, Any]) -> dict[str, Any]:
    return as_dict(call(client.v1.checkout.sessions.create, params=params))


def create_portal_session(client: stripe.StripeClient, customer_id: str, return_url: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"customer": customer_id}
    if return_url:
        params["return_url"] = return_url
    return as_dict(call(client.v1.billing_portal.sessions.create, params=params))


def list_pages(client: stripe.StripeClient, resource: str, params: dict[str, Any] | None = None,
               page_size: int = PAGE_SIZE) -> Iterator[list[dict[str, Any]]]:
    """Every object of a list endpoint (`products`, `prices`, `customers`, `subscriptions`),
    a page at a time, following `starting_after` while Stripe says `has_more`."""
    service = getattr(client.v1, resource)
    query = {**(params or {}), "limit": page_size}
    while True:
        page = call(service.list, params=query)
        items = [as_dict(x) for x in page.data]
        if items:
            yield items
        if not page.has_more or not items:
            return
        query["starting_after"] = items[-1]["id"]
