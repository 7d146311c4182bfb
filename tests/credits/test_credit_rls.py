"""Row level security and grants of the credit tables (credit_accounts, credit_grants,
credit_ledger, credit_reservations, credit_balances) and of the metering rows beside
them (usage_events, api_requests, model_prices), as PostgREST runs requests; the matrix
is in tests.support.rls, api_keys' row of it in tests/keys. Only the service role writes."""
from __future__ import annotations

import pytest

from tests.support.pg import as_user, one, raises_sqlstate, rows, scalar, snapshot
from tests.support.rls import (
    EVERYONE,
    NOT_SERVICE,
    PERSONAS,
    TABLES,
    check_direct_write_is_refused,
    check_members_see_only_their_own_orgs_rows,
    check_select,
)

CREDIT_TABLES = [n for n in TABLES if n != "public.api_keys"]


# Section - select


@pytest.mark.parametrize("who", EVERYONE)
@pytest.mark.parametrize("name", CREDIT_TABLES)
def test_select(conn, api, cast, money, name, who):
    check_select(conn, api, cast, TABLES[name], who)


@pytest.mark.parametrize("name", [n for n in CREDIT_TABLES if not TABLES[n].denied and "model_prices" not in n])
def test_members_see_only_their_own_orgs_rows(conn, api, cast, money, name):
    check_members_see_only_their_own_orgs_rows(api, cast, TABLES[name])


def test_credit_balances_shows_the_account(conn, api, cast, money):
    got = api("member").one("select * from public.credit_balances where org_id = %s", (cast.team,))
    acct = one(conn, "select * from public.credit_accounts where org_id = %s", (cast.team,))
    plan_left = scalar(conn, "select sum(remaining) from public.credit_grants where org_id = %s and kind = 'plan'",
                       (cast.team,))
    assert (got["remaining"], got["reserved"], got["period_start"], got["period_end"], got["plan_remaining"]) == \
        (acct["balance"], acct["reserved"], acct["period_start"], acct["period_end"], plan_left), \
        f"the view mirrors the account: {got}"
    assert got["reserved"] == 25, "the open reservation shows as reserved"


def test_credit_balances_is_security_invoker(conn):
    options = scalar(conn, "select reloptions from pg_class where oid = 'public.credit_balances'::regclass")
    assert "security_invoker=true" in (options or []), f"the view runs with the caller's rights: {options}"


def test_usage_rows_are_readable_by_members_request_log_by_admins(conn, api, cast, money):
    for who in ("owner", "admin", "member"):
        seen = api(who)("select request_id from public.usage_events where org_id = %s", (cast.team,))
        assert [r["request_id"] for r in seen] == ["rls-team"], f"{who} reads the team's usage"
    for who in ("owner", "admin"):
        seen = api(who)("select request_id, status_code from public.api_requests where org_id = %s", (cast.team,))
        assert [(r["request_id"], r["status_code"]) for r in seen] == [("rls-team", 200)], f"{who} reads the log"
    assert api("member")("select request_id from public.api_requests") == [], \
        "a plain member reads no request log (it may hold customer data)"


# Section - writes


@pytest.mark.parametrize("who", NOT_SERVICE)
@pytest.mark.parametrize("op", ["insert", "update", "delete"])
@pytest.mark.parametrize("name", CREDIT_TABLES)
def test_direct_writes_are_refused(conn, api, cast, money, name, op, who):
    check_direct_write_is_refused(conn, api, cast, TABLES[name], op, who)


@pytest.mark.parametrize("who", ["owner", "outsider"])
def test_writes_to_own_rows_are_refused_too(conn, api, cast, money, who):
    """Even an organization's owner cannot touch its money rows directly."""
    org = cast.team if who == "owner" else cast.other_team
    for name, table in TABLES.items():
        if table.denied or "model_prices" in name:
            continue
        before = snapshot(conn, name)
        with raises_sqlstate("42501"):
            api(who)(table.update, {"org": org})
        assert snapshot(conn, name) == before, f"the {who}'s update of their own {name} changed nothing"


def test_service_role_writes_model_prices(conn, api):
    svc = api("service")
    assert svc.count("insert into public.model_prices (model, input_usd_per_1m, cached_input_usd_per_1m, "
                     "output_usd_per_1m) values ('gpt-test', 1, 0.5, 2) returning model") == 1, "inserted"
    assert svc.count("update public.model_prices set output_usd_per_1m = 3 where model = 'gpt-test' "
                     "returning model") == 1, "updated"
    assert scalar(conn, "select output_usd_per_1m from public.model_prices where model = 'gpt-test'") == 3, "stored"
    assert svc.count("delete from public.model_prices where model = 'gpt-test' returning model") == 1, "deleted"
    assert scalar(conn, "select count(*) from public.model_prices where model = 'gpt-test'") == 0, "gone"


def test_service_role_cannot_rewrite_the_ledger(conn, api, cast, money):
    before = snapshot(conn, "public.credit_ledger")
    with raises_sqlstate("42501", "append-only"):
        api("service")("update public.credit_ledger set amount = 1000000 where org_id = %s", (cast.team,))
    assert snapshot(conn, "public.credit_ledger") == before, "the ledger is unchanged"


def test_service_role_cannot_delete_ledger_rows(conn, api, cast, money):
    before = snapshot(conn, "public.credit_ledger")
    with raises_sqlstate("42501"):
        api("service")("delete from public.credit_ledger where org_id = %s", (cast.team,))
    assert snapshot(conn, "public.credit_ledger") == before, "the ledger is unchanged"


@pytest.mark.parametrize("who", ["anon", "member"])
def test_api_roles_cannot_lock_model_prices(conn, api, money, who):
    role = "anon" if who == "anon" else "authenticated"
    with raises_sqlstate("42501"):
        api(who)("lock table public.model_prices in access exclusive mode")  # would stall every chat request
    assert not scalar(conn, "select has_table_privilege(%s, 'public.model_prices', 'MAINTAIN')", (role,)), \
        f"{role} holds no MAINTAIN privilege on model_prices"


def test_api_roles_hold_only_select_on_the_money_tables(conn):
    privileges = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN")
    held = rows(conn, """
        select r.role, t.name, p.priv from unnest(array['anon', 'authenticated']) r(role)
        cross join unnest(%s::text[]) t(name) cross join unnest(%s::text[]) p(priv)
        where has_table_privilege(r.role, t.name, p.priv)
    """, ([n for n in TABLES if "model_prices" not in n], list(privileges)))
    assert held == [], f"the API roles hold no write privilege on a money table: {held}"


def test_user_cannot_call_the_service_rpcs(conn, api, cast, money):
    """The credit and chat RPCs are for the service role only."""
    calls = [
        "select public.reserve_credits(org_id := %(org)s, request_id := 'x', amount := 1)",
        "select public.settle_credits(request_id := 'rls-team-open', charge := 0)",
        "select public.release_credits(request_id := 'rls-team-open')",
        "select public.release_stale_reservations()",
        "select public.grant_credits(org_id := %(org)s, kind := 'adjustment', amount := 1000000)",
        "select public.begin_chat_request(request_id := 'x', model := 'gpt-4o-mini', prompt_tokens_bound := 1, "
        "user_id := %(me)s)",
        "select public.finish_chat_request(request_id := 'rls-team-open', status := 'succeeded', http_status := 200, "
        "endpoint := '/v1', org_id := %(org)s, model := 'gpt-4o-mini')",
        "select public.ensure_usage_partitions()",
    ]
    before = snapshot(conn, "public.credit_ledger", "public.credit_reservations", "public.usage_events")
    for who in ("anon", "owner"):
        for sql in calls:
            with raises_sqlstate("42501"):
                api(who)(sql, {"org": cast.team, "me": cast.owner.id})
    assert snapshot(conn, "public.credit_ledger", "public.credit_reservations", "public.usage_events") == before, \
        "none of the refused calls changed anything"
    got = as_user(conn, cast.owner)  # sanity: the same person can read their balance
    assert got("select org_id from public.credit_balances where org_id = %s", (cast.team,)), "and read the balance"
