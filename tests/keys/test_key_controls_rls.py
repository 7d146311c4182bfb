"""RLS and grants on what issue 12 added to API keys: the control and budget columns are
readable by the organization's members (never the previous secret's hash), writable by
nobody directly; api_key_budgets answers members only; the service-role RPCs are not
the API roles'."""
from __future__ import annotations

import pytest

from tests.support.metering import create_key
from tests.support.pg import as_anon, as_user, raises_sqlstate, snapshot

COLUMNS = ("models, credit_limit, credit_limit_period, rpm, tpm, allowed_ips, budget_period_start, budget_spent, "
           "budget_reserved, rate_window_start, rate_requests, rate_tokens, previous_key_expires_at, rotated_at")


@pytest.mark.parametrize("who, visible", [("owner", 1), ("admin", 1), ("member", 1), ("outsider", 0)])
def test_members_read_the_controls_and_budget_columns(conn, cast, who, visible):
    create_key(conn, cast.owner, cast.team, credit_limit=10, rpm=5, allowed_ips=["10.0.0.0/8"])
    rows = as_user(conn, getattr(cast, who))(f"select {COLUMNS} from public.api_keys where org_id = %s", (cast.team,))
    assert len(rows) == visible
    if visible:
        assert rows[0]["credit_limit"] == 10 and rows[0]["rpm"] == 5


@pytest.mark.parametrize("column", ["previous_key_hash", "key_hash"])
def test_nobody_reads_a_hash(conn, cast, column):
    create_key(conn, cast.owner, cast.team)
    with raises_sqlstate("42501"):
        as_user(conn, cast.owner)(f"select {column} from public.api_keys")


@pytest.mark.parametrize("sql", ["update public.api_keys set credit_limit = null",
                                 "update public.api_keys set budget_spent = 0",
                                 "update public.api_keys set allowed_ips = null"])
def test_controls_change_only_through_update_api_key(conn, cast, sql):
    create_key(conn, cast.owner, cast.team, credit_limit=10, allowed_ips=["10.0.0.0/8"])
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("42501"):
        as_user(conn, cast.owner)(sql)
    assert snapshot(conn, "public.api_keys") == before


@pytest.mark.parametrize("who, ok", [("member", True), ("owner", True), ("outsider", False)])
def test_api_key_budgets_for_members_only(conn, cast, who, ok):
    k = create_key(conn, cast.owner, cast.team, credit_limit=10)
    q = "select * from public.api_key_budgets(%s)"
    if ok:
        rows = as_user(conn, getattr(cast, who))(q, (cast.team,))
        assert [(str(r["api_key_id"]), r["remaining"]) for r in rows if r["credit_limit"]] == [(str(k["id"]), 10)]
        assert all("hash" not in c for c in rows[0])
    else:
        with raises_sqlstate("PT404"):
            as_user(conn, getattr(cast, who))(q, (cast.team,))
    with raises_sqlstate("42501"):
        as_anon(conn)(q, (cast.team,))


@pytest.mark.parametrize("call", ["select public.unkey_sync_plan()", "select public.expire_trials()",
                                  "select public.set_unkey_key_id(gen_random_uuid(), 'x')",
                                  "select public.discard_api_key(gen_random_uuid())",
                                  "select public.unkey_key_state(gen_random_uuid())"])
def test_service_rpcs_are_not_the_api_roles(conn, cast, call):
    with raises_sqlstate("42501"):
        as_user(conn, cast.owner)(call)
