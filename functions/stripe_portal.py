"""POST /api/stripe/portal: owners and admins open the Stripe Billing Portal for their
organization's customer; answers `{url}`, or 409 `no_customer` (Supabase JWT)."""
from __future__ import annotations

import flask
import functions_framework

from lib.http import endpoint, make_app
from lib.stripe_billing import PortalRequest, open_portal, run_route


@functions_framework.http
@endpoint("stripe_portal")
def stripe_portal(request: flask.Request) -> flask.Response:
    return run_route(request, PortalRequest, open_portal)


app = make_app(stripe_portal)
