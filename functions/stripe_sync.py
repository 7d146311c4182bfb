"""POST /api/stripe/sync: members re-fetch their organization's Stripe customer and
subscriptions and store them (the page Checkout returns to calls it; Supabase JWT)."""
from __future__ import annotations

import flask
import functions_framework

from lib.http import endpoint, make_app
from lib.stripe_billing import SyncRequest, refresh_org, run_route


@functions_framework.http
@endpoint("stripe_sync")
def stripe_sync(request: flask.Request) -> flask.Response:
    return run_route(request, SyncRequest, refresh_org)


app = make_app(stripe_sync)
