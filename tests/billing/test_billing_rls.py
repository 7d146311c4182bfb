"""Row Level Security of the billing tables, as PostgREST applies it per request:
the catalogue is public (active rows), customers and payments are for organization
admins, subscriptions for members, stripe_events for nobody; only the service role
writes; raw Stripe data is never selectable by API roles."""
from __future__ import annotations

import pytest

from tests.support.personas import ban
from tests.support.pg import as_anon, as_service, as_user, raises_sqlstate, snapshot
from tests.support.stripe import (
    NOW,
    PRO_PRODUCT,
    apply,
    catalogue,
    customer_event,
    invoice_event,
    price_event,
    product_event,
    subscription_event,
)

PERSONAS = ("anon", "owner", "admin", "member", "outsider", "service")
ACTIVE_PRODUCTS = {"prod_TollPro", "prod_TollEnterprise", "prod_TollCredits"}
ACTIVE_PRICES = {"price_TollProMonthly", "price_TollEnterpriseMonthly", "price_TollCredits5k"}
DENIED = "denied"  # the role has no privilege on the table at all: 42501

# table -> persona -> the ids it sees (DENIED: the select itself is refused)
VISIBLE = {
    "public.stripe_products": {**{p: ACTIVE_PRODUCTS for p in PERSONAS}, "service": ACTIVE_PRODUCTS | {"prod_Retired"}},
    "public.stripe_prices": {**{p: ACTIVE_PRICES for p in PERSONAS}, "service": ACTIVE_PRICES | {"price_Retired"}},
    "public.stripe_customers": {"anon": DENIED, "owner": {"cus_Team"}, "admin": {"cus_Team"}, "member": set(),
                                "outsider": {"cus_Other"}, "service": {"cus_Team", "cus_Other"}},
    "public.subscriptions": {"anon": DENIED, "owner": {"sub_Team"}, "admin": {"sub_Team"}, "member": {"sub_Team"},
                             "outsider": {"sub_Other"}, "service": {"sub_Team", "sub_Other"}},
    "public.payments": {"anon": DENIED, "owner": {"in_Team"}, "admin": {"in_Team"}, "member": set(),
                        "outsider": {"in_Other"}, "service": {"in_Team", "in_Other"}},
    "public.stripe_events": {**{p: DENIED for p in PERSONAS}, "service": "all"},
}
INSERTS = {
    "public.stripe_products": "insert into public.stripe_products (id, synced_at, stripe_data) "
                              "values ('prod_New', now(), '{}') returning id",
    "public.stripe_prices": "insert into public.stripe_prices (id, product_id, currency, type, synced_at, stripe_data) "
                            "values ('price_New', 'prod_New', 'usd', 'one_time', now(), '{}') returning id",
    "public.stripe_customers": "insert into public.stripe_customers (id, org_id) values ('cus_New', %(team)s) "
                               "returning id",
    "public.subscriptions": "insert into public.subscriptions (id, org_id, customer_id, status, synced_at, stripe_data) "
                            "values ('sub_New', %(team)s, 'cus_Team', 'active', now(), '{}') returning id",
    "public.payments": "insert into public.payments (id, kind, org_id, status, synced_at, stripe_data) "
                       "values ('in_New', 'invoice', %(team)s, 'paid', now(), '{}') returning id",
    "public.stripe_events": "insert into public.stripe_events (id, type, created, status) "
                            "values ('evt_New', 'x', now(), 'ignored') returning id",
}
TEAM_ROW = {"public.stripe_products": "prod_TollPro", "public.stripe_prices": "price_TollProMonthly",
            "public.stripe_customers": "cus_Team", "public.subscriptions": "sub_Team", "public.payments": "in_Team"}


@pytest.fixture
def billing(conn, people):
    """The catalogue (and a retired product and price), and for each team org a
    customer, a subscription and an invoice; the events are recorded."""
    apply(conn, *catalogue(), product_event("prod_Retired", active=False),
          price_event("price_Retired", PRO_PRODUCT, active=False))
    for org, name in ((people.team, "Team"), (people.other_team, "Other")):
        apply(conn, customer_event(f"cus_{name}", org_id=org),
              subscription_event(f"sub_{name}", f"cus_{name}", org_id=org),
              invoice_event(f"in_{name}", f"cus_{name}", f"sub_{name}", created=NOW - 60))
    return people


def request(conn, people, who):
    if who == "anon":
        return as_anon(conn)
    if who == "service":
        return as_service(conn)
    return as_user(conn, getattr(people, who))


@pytest.mark.parametrize("table", list(VISIBLE))
@pytest.mark.parametrize("who", PERSONAS)
def test_who_sees_which_rows(conn, billing, table, who):
    expected = VISIBLE[table][who]
    if expected == DENIED:
        with raises_sqlstate("42501"):
            request(conn, billing, who)(f"select id from {table}")
        return
    ids = {r["id"] for r in request(conn, billing, who)(f"select id from {table}")}
    if expected == "all":
        assert ids == {r[0] for r in conn.execute(f"select id from {table}")} and ids, f"{who} sees every row"
    else:
        assert ids == expected, f"{who} sees exactly {sorted(expected)} in {table}"


@pytest.mark.parametrize("table", list(INSERTS))
@pytest.mark.parametrize("who", [p for p in PERSONAS if p != "service"])
def test_only_the_service_role_writes(conn, billing, table, who):
    req = request(conn, billing, who)
    before = snapshot(conn, table)
    row = TEAM_ROW.get(table, "evt_None")
    change = "error = 'x'" if table == "public.stripe_events" else "updated_at = now()"
    for sql in (INSERTS[table], f"update {table} set {change} where id = %(row)s returning id",
                f"delete from {table} where id = %(row)s returning id"):
        with raises_sqlstate("42501"):
            req(sql, {"team": billing.team, "row": row})
    assert snapshot(conn, table) == before, f"{who}'s refused insert, update and delete changed nothing"


@pytest.mark.parametrize("table", list(INSERTS))
def test_the_service_role_inserts_updates_and_deletes(conn, billing, table):
    svc = as_service(conn)
    params = {"team": billing.team}
    assert svc.count(INSERTS[table], params) == 1
    new_id = {"public.stripe_products": "prod_New", "public.stripe_prices": "price_New",
              "public.stripe_customers": "cus_New", "public.subscriptions": "sub_New", "public.payments": "in_New",
              "public.stripe_events": "evt_New"}[table]
    change = "error = 'x'" if table == "public.stripe_events" else "updated_at = now()"
    assert svc.count(f"update {table} set {change} where id = %(row)s returning id", {"row": new_id}) == 1
    assert svc.count(f"delete from {table} where id = %(row)s returning id", {"row": new_id}) == 1


@pytest.mark.parametrize("table", ["public.stripe_products", "public.stripe_customers", "public.subscriptions",
                                   "public.payments"])
def test_raw_stripe_data_is_never_selectable(conn, billing, table):
    with raises_sqlstate("42501", "permission denied"):
        as_user(conn, billing.owner)(f"select stripe_data from {table}")
    with raises_sqlstate("42501"):
        as_user(conn, billing.owner)(f"select * from {table}")


def test_a_banned_admin_sees_no_customer_or_payment(conn, billing):
    ban(conn, billing.admin)
    assert as_user(conn, billing.admin)("select id from public.stripe_customers") == []
    assert as_user(conn, billing.admin)("select id from public.payments") == []
    assert as_user(conn, billing.admin)("select id from public.subscriptions") == []


@pytest.mark.parametrize("column, value", [("billing_status", "active"), ("plan_id", "enterprise"),
                                           ("stripe_customer_id", "cus_Mine")])
def test_admins_cannot_set_billing_columns(conn, billing, column, value):
    before = snapshot(conn, "public.organizations")
    with raises_sqlstate("42501"):
        as_user(conn, billing.owner)(f"update public.organizations set {column} = %s where id = %s",
                                     (value, billing.team))
    assert snapshot(conn, "public.organizations") == before


def test_members_read_their_org_billing_status(conn, billing):
    row = as_user(conn, billing.member).one("select billing_status, plan_id from public.organizations where id = %s",
                                            (billing.team,))
    assert row == {"billing_status": "active", "plan_id": "pro"}


@pytest.mark.parametrize("call", [
    "select public.stripe_apply_event(event_id := 'evt_x', event_type := 'x', created := 1)",
    "select public.stripe_record_event_failure(event_id := 'evt_x', event_type := 'x', created := 1, error := 'e')",
    "select public.stripe_sync_objects(kind := 'product', objects := '[]')",
    "select public.stripe_billing_context(org_id := gen_random_uuid(), user_id := gen_random_uuid())",
])
@pytest.mark.parametrize("who", ["anon", "owner"])
def test_the_service_rpcs_are_not_callable_by_api_roles(conn, billing, call, who):
    before = snapshot(conn, "public.stripe_events")
    with raises_sqlstate("42501", "permission denied for function"):
        request(conn, billing, who)(call)
    assert snapshot(conn, "public.stripe_events") == before
