"""POST /api/stripe/webhook: Stripe's events, verified (Stripe-Signature over the raw
body), parsed, and applied in one SQL transaction. Duplicates answer 200 and change
nothing; an event that fails answers 500 with nothing changed, so Stripe retries it.
With STRIPE_SECRET_KEY set, a subscription is re-fetched so it is stored as it is now."""
from __future__ import annotations

import functools

import flask
import functions_framework

from lib.billing import api as stripe_api
from lib.billing.events import apply_event, parse_event
from lib.billing.signature import verify
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, json_response, make_app, require_method


@functions_framework.http
@endpoint("stripe_webhook")
def stripe_webhook(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    settings = get_settings()
    raw = request.get_data(cache=True)
    verify(raw, request.headers.get("Stripe-Signature"), settings.require("stripe_webhook_secret"))
    event = parse_event(raw)
    fetch = (functools.partial(stripe_api.retrieve_subscription, stripe_api.make_client(settings))
             if settings.stripe_secret_key else None)
    return json_response(apply_event(get_database(), event, fetch_subscription=fetch))


app = make_app(stripe_webhook)
