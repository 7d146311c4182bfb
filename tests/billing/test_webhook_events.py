"""POST /api/stripe/webhook through the real server: every handled type is stored and
recorded, other types are recorded as ignored, duplicates change nothing, a crash in
the middle changes nothing and Stripe's retry finishes the job."""
from __future__ import annotations

import json
import time

import httpx
import pytest
import respx

from lib.billing.events import ENABLED_EVENTS, HANDLERS
from tests.support.pg import scalar, snapshot
from tests.support.stripe import (
    NOW,
    PERIOD,
    PRO_PRICE,
    PRO_PRODUCT,
    STRIPE_API,
    apply,
    catalogue,
    checkout_event,
    customer_event,
    event,
    invoice_event,
    new_id,
    org_state,
    payment_intent_event,
    post_event,
    price_event,
    product_event,
    subscription_event,
)

ALL_TABLES = ("public.stripe_events", "public.stripe_products", "public.stripe_prices", "public.stripe_customers",
              "public.subscriptions", "public.payments", "public.organizations", "public.credit_grants",
              "public.credit_ledger", "public.profiles")


def example(event_type: str, org) -> tuple[dict, str, str]:
    """An event of this type, the table its object lands in, and the row id there."""
    kind, cus = HANDLERS[event_type].kind, new_id("cus")
    if kind == "product":
        oid = new_id("prod")
        return product_event(oid, plan="pro", type=event_type), "public.stripe_products", oid
    if kind == "price":
        oid = new_id("price")
        return price_event(oid, PRO_PRODUCT, type=event_type), "public.stripe_prices", oid
    if kind == "customer":
        return customer_event(cus, org_id=org, type=event_type), "public.stripe_customers", cus
    if kind == "checkout_session":
        return (checkout_event(new_id("cs"), org_id=org, customer_id=cus) | {"type": event_type},
                "public.stripe_customers", cus)
    if kind == "subscription":
        oid = new_id("sub")
        status = {"deleted": "canceled", "paused": "paused"}.get(event_type.rsplit(".", 1)[1], "active")
        return subscription_event(oid, cus, org_id=org, status=status, type=event_type), "public.subscriptions", oid
    if kind == "invoice":
        oid = new_id("in")
        status = "open" if event_type == "invoice.payment_failed" else "paid"
        return invoice_event(oid, cus, new_id("sub"), status=status, type=event_type), "public.payments", oid
    oid = new_id("pi")
    return (payment_intent_event(oid, cus, failed=event_type.endswith("failed")) | {"type": event_type},
            "public.payments", oid)


@pytest.mark.parametrize("event_type", ENABLED_EVENTS)
def test_every_handled_type_is_stored_and_recorded(world, event_type):
    evt, table, object_id = example(event_type, world.people.team)
    r = post_event(world.base, evt)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processed" and r.json()["event_id"] == evt["id"]
    with world.connect() as c:
        row = c.execute("select type, status::text, object_id, error, attempts from public.stripe_events where id = %s",
                        (evt["id"],)).fetchone()
        assert row == (event_type, "processed", evt["data"]["object"]["id"], None, 1), "the event is recorded"
        assert scalar(c, f"select count(*) from {table} where id = %s", (object_id,)) == 1, f"{table} has the object"


def test_other_types_are_recorded_as_ignored_and_change_nothing_else(world):
    evt = event("charge.succeeded", created=NOW)
    with world.connect() as c:
        before = snapshot(c, *ALL_TABLES[1:])
        r = post_event(world.base, evt)
        assert r.status_code == 200 and r.json() == {"event_id": evt["id"], "status": "ignored"}
        assert c.execute("select type, status::text from public.stripe_events where id = %s",
                         (evt["id"],)).fetchone() == ("charge.succeeded", "ignored")
        assert snapshot(c, *ALL_TABLES[1:]) == before, "an ignored event touches nothing but stripe_events"


@pytest.mark.parametrize("fixture", ["customer.subscription.created.basil", "charge.succeeded"])
def test_a_duplicate_answers_200_and_changes_nothing(world, fixture):
    org = world.people.personal
    with world.connect() as c:
        apply(c, *catalogue())
    evt = (subscription_event(new_id("sub"), new_id("cus"), org_id=org) if "subscription" in fixture
           else event(fixture))
    first = post_event(world.base, evt)
    assert first.status_code == 200 and first.json()["status"] in ("processed", "ignored")
    with world.connect() as c:
        after_first = snapshot(c, *ALL_TABLES)
        again = post_event(world.base, json.dumps(evt).encode())
        assert again.status_code == 200, again.text
        assert again.json() == {"event_id": evt["id"], "status": "duplicate"}
        assert snapshot(c, *ALL_TABLES) == after_first, "the second delivery changed nothing, not even attempts"


def test_a_crash_mid_handler_leaves_nothing_and_the_retry_finishes(world):
    org = world.people.personal
    sub, cus = new_id("sub"), new_id("cus")
    evt = subscription_event(sub, cus, org_id=org, type="customer.subscription.created")
    with world.connect() as c:
        apply(c, *catalogue())
        c.execute("create function private.test_crash() returns trigger language plpgsql as "
                  "$$ begin raise exception 'simulated crash after the subscription was written'; end $$")
        c.execute("create trigger test_crash before insert on public.credit_grants "
                  "for each row execute function private.test_crash()")
        before = snapshot(c, *ALL_TABLES[1:])
        r = post_event(world.base, evt)
        assert r.status_code == 500, r.text
        assert r.json()["error"]["type"] == "event_failed"
        assert "simulated crash" in r.json()["error"]["message"]
        assert snapshot(c, *ALL_TABLES[1:]) == before, "subscription, plan, credits, customer link: all rolled back"
        assert c.execute("select status::text, attempts, error like '%%simulated crash%%' from public.stripe_events "
                         "where id = %s", (evt["id"],)).fetchone() == ("failed", 1, True), "the failure is visible"

        c.execute("drop trigger test_crash on public.credit_grants")
        retry = post_event(world.base, evt)
        assert retry.status_code == 200 and retry.json()["status"] == "processed", "Stripe's retry finishes the job"
        assert c.execute("select status::text, attempts, error from public.stripe_events where id = %s",
                         (evt["id"],)).fetchone() == ("processed", 2, None)
        assert org_state(c, org) | {"stripe_customer_id": None} == {
            "plan_id": "pro", "billing_status": "active", "stripe_customer_id": None, "balance": 50000}
        assert scalar(c, "select status::text from public.subscriptions where id = %s", (sub,)) == "active"


def test_an_object_that_does_not_parse_is_422_recorded_and_not_stored(world):
    evt = subscription_event(new_id("sub"), new_id("cus"), status="frozen")
    r = post_event(world.base, evt)
    assert r.status_code == 422, r.text
    assert "data.object is not a subscription" in r.json()["error"]["message"]
    with world.connect() as c:
        assert c.execute("select status::text, error like '%%status%%' from public.stripe_events where id = %s",
                         (evt["id"],)).fetchone() == ("failed", True)
        assert scalar(c, "select count(*) from public.subscriptions") == 0


def test_both_payload_layouts_over_http(world):
    org, cus = world.people.team, new_id("cus")
    events = [
        customer_event(cus, org_id=org),
        subscription_event("sub_PreBasil", cus, layout="pre_basil", created=NOW - 2 * 86400),
        subscription_event("sub_Basil", cus, layout="basil", created=NOW - 2 * 86400),
        invoice_event("in_PreBasil", cus, "sub_PreBasil", layout="pre_basil"),
        invoice_event("in_Basil", cus, "sub_Basil", layout="basil"),
    ]
    for evt in events:
        assert post_event(world.base, evt).status_code == 200
    with world.connect() as c:
        subs = c.execute("select id, extract(epoch from current_period_start)::bigint, "
                         "extract(epoch from current_period_end)::bigint, price_id, org_id from public.subscriptions "
                         "order by id").fetchall()
        assert subs == [("sub_Basil", *PERIOD, PRO_PRICE, org), ("sub_PreBasil", *PERIOD, PRO_PRICE, org)], \
            "period from the items (basil) or the subscription (pre-basil)"
        invoices = c.execute("select id, subscription_id, org_id, amount, amount_paid, status, "
                             "extract(epoch from period_end)::bigint from public.payments order by id").fetchall()
        assert invoices == [("in_Basil", "sub_Basil", org, 4900, 4900, "paid", PERIOD[1]),
                            ("in_PreBasil", "sub_PreBasil", org, 4900, 4900, "paid", PERIOD[1])], \
            "subscription from parent.subscription_details (basil) or the invoice (pre-basil)"


# Section - with STRIPE_SECRET_KEY: a subscription is re-fetched and stored as true now

@pytest.mark.stripe_key
def test_with_a_secret_key_the_subscription_is_refetched(world):
    org, sub, cus = world.people.personal, new_id("sub"), new_id("cus")
    current = subscription_event(sub, cus, org_id=org, status="past_due")["data"]["object"]
    stale = subscription_event(sub, cus, org_id=org, status="active", created=NOW - 5 * 86400)
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        fetched = mock.get(f"{STRIPE_API}/v1/subscriptions/{sub}").mock(return_value=httpx.Response(200, json=current))
        r = post_event(world.base, stale)
        assert r.status_code == 200, r.text
        assert fetched.call_count == 1, "the subscription was fetched from the API"
        final = post_event(world.base, subscription_event(sub, cus, org_id=org, status="canceled",
                                                          type="customer.subscription.deleted",
                                                          created=int(time.time()) + 60))
        assert final.status_code == 200 and fetched.call_count == 1, "a final state is not re-fetched"
    with world.connect() as c:
        assert c.execute("select status::text, synced_at > now() - interval '1 minute' from public.subscriptions "
                         "where id = %s", (sub,)).fetchone() == ("canceled", True)
        assert scalar(c, "select status::text from public.stripe_events where id = %s", (stale["id"],)) == "processed"


@pytest.mark.stripe_key
def test_a_failed_refetch_is_recorded_and_answered_502(world):
    sub = new_id("sub")
    evt = subscription_event(sub, new_id("cus"))
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.get(f"{STRIPE_API}/v1/subscriptions/{sub}").mock(return_value=httpx.Response(
            404, json={"error": {"type": "invalid_request_error", "code": "resource_missing",
                                 "message": f"No such subscription: '{sub}'"}}))
        r = post_event(world.base, evt)
    assert r.status_code == 502 and "No such subscription" in r.json()["error"]["message"]
    with world.connect() as c:
        assert scalar(c, "select status::text from public.stripe_events where id = %s", (evt["id"],)) == "failed"
        assert scalar(c, "select count(*) from public.subscriptions") == 0
