"""GET /api/usage/requests?org_id=…[&cursor=…&limit=…&key=…&model=…&status=…&date=…]:
single requests of the organization, newest first, for a member (Supabase JWT).

Verify the JWT -> parse the query -> one database call (usage_requests_for_user) -> respond.
"""
from __future__ import annotations

import flask
import functions_framework

from lib.core.auth import signed_in_user
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, json_response, make_app, require_method
from lib.usage.queries import RequestsQuery, parse_query, requests_page


@functions_framework.http
@endpoint("usage_requests")
def usage_requests(request: flask.Request) -> flask.Response:
    require_method(request, "GET")
    user = signed_in_user(request.headers.get("Authorization"), get_settings())
    query: RequestsQuery = parse_query(request.args, RequestsQuery)
    return json_response(requests_page(get_database().rpc("usage_requests_for_user", query.rpc_args(user.user_id))))


app = make_app(usage_requests)
