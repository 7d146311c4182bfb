"""POST /api/stripe/checkout: owners and admins start a Stripe Checkout Session for an
active price; answers `{url}` (Supabase JWT)."""
from __future__ import annotations

import flask
import functions_framework

from lib.http import endpoint, make_app
from lib.stripe_billing import CheckoutRequest, run_route, start_checkout


@functions_framework.http
@endpoint("stripe_checkout")
def stripe_checkout(request: flask.Request) -> flask.Response:
    return run_route(request, CheckoutRequest, start_checkout)


app = make_app(stripe_checkout)
