"""plans: the public catalogue. Everyone reads it, signed in or not; only the service
role (seed, Stripe catalogue sync) writes it."""
from __future__ import annotations

import pytest

from tests.support.personas import PERSONAS
from tests.support.pg import as_user, raises_sqlstate, scalar, snapshot

PLANS = "public.plans"
CATALOGUE = ["free", "pro", "enterprise"]


def catalogue(conn):
    return [r[0] for r in conn.execute("select id from public.plans order by sort_order, id")]


# Section - select

@pytest.mark.parametrize("who", ("anon",) + PERSONAS)
def test_everyone_reads_the_catalogue(api, conn, who):
    rows = api(who)("select id, name, monthly_credits, features from public.plans order by sort_order, id")
    assert [r["id"] for r in rows] == catalogue(conn), f"{who} reads every plan"
    assert [r["id"] for r in rows][:3] == CATALOGUE, "free, pro and enterprise exist on every database"


def test_banned_user_still_reads_the_public_catalogue(conn, suspended):
    rows = as_user(conn, suspended)("select id from public.plans")
    assert len(rows) == scalar(conn, "select count(*) from public.plans"), \
        "plans are public (anon reads them too), so a ban does not hide them; this is the one exception"


def test_service_role_reads_the_catalogue(api, conn):
    rows = api("service")("select id from public.plans")
    assert len(rows) == len(catalogue(conn)), "the service role reads every plan"


# Section - writes (service role only)

WRITES = {
    "insert": "insert into public.plans (id, name, monthly_credits) values ('hacked', 'Hacked', 999999999)",
    "update": "update public.plans set monthly_credits = 999999999 where id = 'free'",
    "delete": "delete from public.plans where id = 'enterprise'",
    "truncate": "truncate public.plans cascade",
}


@pytest.mark.parametrize("op", WRITES)
@pytest.mark.parametrize("who", ("anon",) + PERSONAS)
def test_nobody_but_the_service_role_writes_plans(api, conn, who, op):
    before = snapshot(conn, PLANS)
    with raises_sqlstate("42501"):
        api(who)(WRITES[op])
    assert snapshot(conn, PLANS) == before, f"{who}'s refused {op} changed nothing"


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_api_roles_hold_nothing_but_select_on_plans(conn, role):
    privileges = ["select", "insert", "update", "delete", "truncate", "references", "trigger"]
    if conn.info.server_version >= 170000:
        privileges.append("maintain")  # vacuum, analyze, lock table, ... on PG 17+
    held = [p for p in privileges if scalar(conn, "select has_table_privilege(%s, 'public.plans', %s)", (role, p))]
    assert held == ["select"], f"{role} holds only SELECT on plans, not {held}"


def test_platform_admin_cannot_edit_plans_either(api, conn):
    before = snapshot(conn, PLANS)
    with raises_sqlstate("42501"):
        api("platform_admin")("update public.plans set name = 'Free!' where id = 'free'")
    assert snapshot(conn, PLANS) == before, "a platform admin edits plans through the service role, not directly"


def test_service_role_writes_plans(api, conn):
    service = api("service")
    assert service.count("insert into public.plans (id, name, monthly_credits, sort_order) "
                         "values ('team', 'Team', 200000, 15) returning id") == 1, "service inserts a plan"
    assert service.count("update public.plans set monthly_credits = 250000 where id = 'team' returning id") == 1, \
        "service updates a plan"
    assert scalar(conn, "select monthly_credits from public.plans where id = 'team'") == 250000, "update stored"
    assert service.count("delete from public.plans where id = 'team' returning id") == 1, "service deletes a plan"
    assert scalar(conn, "select count(*) from public.plans where id = 'team'") == 0, "gone"


def test_plan_in_use_cannot_be_deleted(api, conn):
    before = snapshot(conn, PLANS)
    with raises_sqlstate("23503"):
        api("service")("delete from public.plans where id = 'free'")
    assert snapshot(conn, PLANS) == before, "organizations on the free plan keep it alive"
