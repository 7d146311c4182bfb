"""POST /api/stripe/sync: members re-fetch their organization's Stripe customer and
subscriptions and store them (the page Checkout returns to calls it; Supabase JWT)."""
from __future__ import annotations

import flask
import functions_framework

from lib.billing.api import make_client
from lib.billing.checkout import SyncRequest, refresh_org
from lib.core.auth import signed_in_user
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, json_response, make_app, parse_json, require_method


@functions_framework.http
@endpoint("stripe_sync")
def stripe_sync(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    client = make_client(get_settings())  # 503 naming STRIPE_SECRET_KEY before anything else
    user = signed_in_user(request.headers.get("Authorization"), get_settings())
    body = parse_json(request, SyncRequest)
    return json_response(refresh_org(get_database(), client, user.user_id, body))


app = make_app(stripe_sync)
