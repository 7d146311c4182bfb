"""Row level security of usage_daily and who may call the usage RPCs, as PostgREST runs
them: every persona x read and every write."""
from __future__ import annotations

import pytest

from tests.support.pg import raises_sqlstate, scalar
from tests.support.rls import (
    EVERYONE,
    MEMBERS,
    NOT_SERVICE,
    check_direct_write_is_refused,
    check_members_see_only_their_own_orgs_rows,
    check_select,
    t,
)

USAGE_DAILY = t("public.usage_daily", MEMBERS,
                insert="insert into public.usage_daily (org_id, day, hour, kind, status_class, credits) "
                       "values (%(org)s, current_date, 0, 'chat', 'ok', 1000000) returning 1",
                update="update public.usage_daily set credits = 0 where org_id = %(org)s returning 1")


@pytest.fixture
def rolled_up(conn, cast):
    """Rollup rows for both teams (written as superuser: a run inside this uncommitted
    transaction would not see its own in-flight events, by design)."""
    for org, credits in ((cast.team, 3), (cast.other_team, 4)):
        conn.execute("insert into public.usage_daily (org_id, day, hour, kind, status_class, requests, credits) "
                     "values (%s, (now() at time zone 'UTC')::date, 0, 'chat', 'ok', 1, %s)", (org, credits))
    assert scalar(conn, "select count(*) from public.usage_daily") == 2


@pytest.mark.parametrize("who", EVERYONE)
def test_usage_daily_select(conn, api, cast, rolled_up, who):
    check_select(conn, api, cast, USAGE_DAILY, who)


def test_usage_daily_members_see_only_their_own_orgs_rows(api, cast, rolled_up):
    check_members_see_only_their_own_orgs_rows(api, cast, USAGE_DAILY)


@pytest.mark.parametrize("op", ["insert", "update", "delete"])
@pytest.mark.parametrize("who", NOT_SERVICE)
def test_usage_daily_direct_writes_are_refused(conn, api, cast, rolled_up, op, who):
    check_direct_write_is_refused(conn, api, cast, USAGE_DAILY, op, who)


@pytest.mark.parametrize("who", ["owner", "admin", "member"])
def test_members_call_usage_summary(api, cast, rolled_up, who):
    s = api(who)("select public.usage_summary(org_id := %s) as s", (cast.team,))[0]["s"]
    assert s["totals"]["credits"] == 3


@pytest.mark.parametrize(("who", "sqlstate"), [("outsider", "42501"), ("banned", "42501"), ("anon", "42501"),
                                               ("platform_admin", "42501"), ("service", "PT401")])
def test_others_may_not_call_usage_summary(api, cast, rolled_up, who, sqlstate):
    with raises_sqlstate(sqlstate):
        api(who)("select public.usage_summary(org_id := %s)", (cast.team,))


def test_an_unknown_organization_is_404(api, cast):
    with raises_sqlstate("PT404"):
        api("member")("select public.usage_summary(org_id := gen_random_uuid())")


@pytest.mark.parametrize("fn", [
    "usage_summary_for_user(user_id := %(u)s, org_id := %(org)s)",
    "usage_requests_for_user(user_id := %(u)s, org_id := %(org)s)",
    "usage_for_key(key_hash := '\\x00')",
    "usage_rollup()",
    "usage_rollup_rebuild(current_date, current_date)",
])
@pytest.mark.parametrize("who", NOT_SERVICE)
def test_service_rpcs_are_refused_to_api_roles(api, cast, fn, who):
    with raises_sqlstate("42501"):
        api(who)(f"select public.{fn}", {"u": cast.owner.id, "org": cast.team})


def test_service_rpcs_check_the_user_they_act_for(api, cast, rolled_up):
    service = api("service")
    assert service("select public.usage_summary_for_user(user_id := %s, org_id := %s) as s",
                   (cast.member.id, cast.team))[0]["s"]["totals"]["credits"] == 3
    with raises_sqlstate("42501"):
        service("select public.usage_summary_for_user(user_id := %s, org_id := %s)", (cast.outsider.id, cast.team))
    with raises_sqlstate("42501"):
        service("select public.usage_requests_for_user(user_id := %s, org_id := %s)", (cast.banned.id, cast.team))
