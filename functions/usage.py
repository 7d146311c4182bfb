"""GET /api/usage?org_id=…&days=…&tz=…&group_by=day|hour&format=json|csv: the usage page
for a member of the organization (Supabase JWT), as usage_summary answers it.

Verify the JWT -> parse the query -> one database call (usage_summary_for_user) -> respond.
"""
from __future__ import annotations

import flask
import functions_framework

from lib.core.auth import signed_in_user
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.http import endpoint, json_response, make_app, require_method
from lib.usage.queries import SummaryQuery, parse_query, summary_csv


@functions_framework.http
@endpoint("usage")
def usage(request: flask.Request) -> flask.Response:
    require_method(request, "GET")
    user = signed_in_user(request.headers.get("Authorization"), get_settings())
    query: SummaryQuery = parse_query(request.args, SummaryQuery)
    summary = get_database().rpc("usage_summary_for_user", query.rpc_args(user.user_id))
    if query.format == "csv":
        name = f"usage-{query.org_id}-{query.days}d.csv"
        return flask.Response(summary_csv(summary), mimetype="text/csv",
                              headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return json_response(summary)


app = make_app(usage)
