"""Stripe delivers late, twice and out of order; the mirror must still end exact.

Every pair of subscription events is applied in both orders and compared with the
newer one alone; a subscription's whole life is replayed in many orders (and twice
over) and must end on the same rows, the same organization state and balance."""
from __future__ import annotations

import itertools
import random

import pytest

from lib.billing.events import sync_objects
from tests.support.stripe import (
    DAY,
    ENT_PRICE,
    ENT_PRODUCT,
    NOW,
    PERIOD,
    ConnDatabase,
    apply,
    catalogue,
    checkout_event,
    customer_event,
    invoice_event,
    mirror,
    org_state,
    payment_intent_event,
    role_of,
    subscription_event,
)

SUB, CUS = "sub_Life", "cus_Life"
T0 = NOW - 10 * DAY
ENT = (ENT_PRICE, ENT_PRODUCT)


def subscription_states(org) -> dict[str, dict]:
    """One subscription's events, oldest first."""
    def sub(created, **kw):
        return subscription_event(SUB, CUS, org_id=org, created=created, **kw)
    return {
        "created_incomplete": sub(T0, status="incomplete", type="customer.subscription.created"),
        "active": sub(T0 + 10),
        "upgraded": sub(T0 + DAY, price=ENT),
        "past_due": sub(T0 + 2 * DAY, price=ENT, status="past_due"),
        "recovered": sub(T0 + 3 * DAY, price=ENT),
        "paused": sub(T0 + 4 * DAY, price=ENT, status="paused", type="customer.subscription.paused"),
        "resumed": sub(T0 + 5 * DAY, price=ENT, type="customer.subscription.resumed"),
        "cancel_at_period_end": sub(T0 + 6 * DAY, price=ENT, cancel_at_period_end=True, cancel_at=PERIOD[1]),
        "deleted": sub(T0 + 7 * DAY, price=ENT, status="canceled", canceled_at=T0 + 7 * DAY,
                       ended_at=T0 + 7 * DAY, type="customer.subscription.deleted"),
    }


NAMES = list(subscription_states(None))


def outcome(conn, people) -> tuple:
    return (mirror(conn), org_state(conn, people.personal), role_of(conn, people.owner))


def replay(conn, people, events) -> tuple:
    """The outcome of applying `events` in this order; rolled back afterwards."""
    with conn.transaction(force_rollback=True):
        apply(conn, *events)
        return outcome(conn, people)


@pytest.mark.parametrize("older, newer", list(itertools.combinations(NAMES, 2)))
def test_every_pair_of_subscription_events_in_both_orders(conn, people, older, newer):
    apply(conn, *catalogue(), customer_event(CUS, org_id=people.personal))
    states = subscription_states(people.personal)
    in_order = replay(conn, people, [states[older], states[newer]])
    reversed_ = replay(conn, people, [states[newer], states[older]])
    newer_alone = replay(conn, people, [states[newer]])
    assert in_order == newer_alone, f"{older} then {newer}: the newer state is what stays"
    assert reversed_ == newer_alone, f"{newer} then {older}: the late, older event changes nothing"
    status = in_order[0]["public.subscriptions"][0][3]
    assert status == states[newer]["data"]["object"]["status"]


@pytest.mark.parametrize("first, second, winner", [
    ("created_incomplete", "active", "active"),
    ("active", "deleted", "canceled"),
    ("past_due", "deleted", "canceled"),
])
def test_in_the_same_second_the_more_final_state_wins(conn, people, first, second, winner):
    apply(conn, customer_event(CUS, org_id=people.personal))
    states = subscription_states(people.personal)
    a, b = states[first], states[second]
    b["created"] = a["created"]
    one = replay(conn, people, [a, b])
    other = replay(conn, people, [b, a])
    assert one == other, "same second: the order of delivery does not matter"
    assert one[0]["public.subscriptions"][0][3] == winner


def test_in_the_same_second_equal_ranks_break_on_the_event_id(conn, people):
    states = subscription_states(people.personal)
    a, b = states["active"], states["cancel_at_period_end"]
    b["created"], b["data"]["object"]["items"] = a["created"], a["data"]["object"]["items"]
    one, other = replay(conn, people, [a, b]), replay(conn, people, [b, a])
    assert one == other
    winner = max(a, b, key=lambda e: e["id"])
    assert one[0]["public.subscriptions"][0][18] == winner["id"], "the larger event id is the stored state"


def whole_life(org) -> list[dict]:
    """Catalogue, checkout, subscribe (pro), upgrade (enterprise), a renewal whose first
    charge fails then succeeds, cancel at period end, deletion; with invoices and intents."""
    states = subscription_states(org)
    renewal = (T0 + 8 * DAY, T0 + 38 * DAY)
    return [
        *catalogue(),
        customer_event(CUS, org_id=org, created=T0 - 60),
        checkout_event("cs_test_Life", org_id=org, customer_id=CUS, subscription_id=SUB, created=T0 + 20),
        states["created_incomplete"], states["active"],
        invoice_event("in_Life1", CUS, SUB, created=T0 + 5),
        payment_intent_event("pi_Life1", CUS, created=T0 + 5),
        states["upgraded"],
        invoice_event("in_Life2", CUS, SUB, status="open", billing_reason="subscription_cycle", period=renewal,
                      price=ENT, created=T0 + 2 * DAY - 60, type="invoice.payment_failed"),
        payment_intent_event("pi_Life2", CUS, failed=True, created=T0 + 2 * DAY - 60),
        states["past_due"],
        invoice_event("in_Life2", CUS, SUB, billing_reason="subscription_cycle", period=renewal, price=ENT,
                      created=T0 + 3 * DAY - 60),
        invoice_event("in_Life2", CUS, SUB, billing_reason="subscription_cycle", period=renewal, price=ENT,
                      created=T0 + 3 * DAY - 60, type="invoice.payment_succeeded"),
        payment_intent_event("pi_Life2", CUS, created=T0 + 3 * DAY - 60),
        states["recovered"], states["cancel_at_period_end"], states["deleted"],
    ]


def test_a_whole_life_replayed_in_any_order_ends_on_the_same_rows(conn, people):
    life = whole_life(people.personal)
    expected = replay(conn, people, life)
    assert expected[1] == {"plan_id": "free", "billing_status": "canceled", "stripe_customer_id": CUS,
                           "balance": 1000}, "the life ends canceled, back on the free plan's 1,000 credits"
    assert expected[2] == "user", "the personal owner is no longer premium"
    rng = random.Random(20261122)
    orders = [list(reversed(life))] + [rng.sample(life, len(life)) for _ in range(12)]
    for n, order in enumerate(orders):
        assert replay(conn, people, order) == expected, f"order #{n} ended elsewhere"
    assert replay(conn, people, life + rng.sample(life, len(life))) == expected, "every event twice"


def test_the_life_in_order_passes_through_the_right_states(conn, people):
    org, life = people.personal, whole_life(people.personal)
    seen = []
    for evt in life:
        apply(conn, evt)
        state = org_state(conn, org)
        seen.append((state["plan_id"], state["billing_status"], role_of(conn, people.owner)))
    compact = [s for s, prev in zip(seen, [None] + seen) if s != prev]
    assert compact == [
        ("free", "inactive", "user"),       # catalogue, customer, checkout, incomplete
        ("pro", "active", "premium"),       # active
        ("enterprise", "active", "premium"),  # upgraded
        ("enterprise", "past_due", "premium"),  # past due: the plan is kept while Stripe retries
        ("enterprise", "active", "premium"),  # recovered
        ("free", "canceled", "user"),       # deleted
    ]


def test_a_state_fetched_from_the_api_outranks_older_events(conn, people):
    org = people.personal
    current = subscription_event(SUB, CUS, org_id=org, status="past_due")["data"]["object"]
    sync_objects(ConnDatabase(conn), "subscription", [current])
    [result] = apply(conn, subscription_event(SUB, CUS, org_id=org, status="active", created=NOW - 60))
    assert result["effects"]["applied"] is False, "an event older than the API's state is stale"
    assert conn.execute("select status::text, last_event_id from public.subscriptions").fetchone() == (
        "past_due", None)


@pytest.mark.parametrize("first", ["paid", "failed"])
def test_a_payment_failure_delivered_after_the_payment_stays_behind(conn, people, first):
    failed = invoice_event("in_Late", CUS, SUB, status="open", created=NOW - 120, type="invoice.payment_failed")
    paid = invoice_event("in_Late", CUS, SUB, created=NOW - 60)
    apply(conn, *((paid, failed) if first == "paid" else (failed, paid)))
    assert conn.execute("select status, amount_paid from public.payments where id = 'in_Late'").fetchone() == (
        "paid", 4900)


def test_a_customer_update_older_than_its_deletion_is_stale(conn, people):
    org = people.team
    apply(conn, customer_event(CUS, org_id=org, created=NOW - 100),
          customer_event(CUS, org_id=org, created=NOW - 10, type="customer.deleted"),
          customer_event(CUS, org_id=org, email="late@example.test", created=NOW - 50, type="customer.updated"))
    row = conn.execute("select email, deleted_at is not null from public.stripe_customers").fetchone()
    assert row == ("billing@example.test", True), "deleted stays deleted; the late update is ignored"
    assert org_state(conn, org)["stripe_customer_id"] is None, "a deleted customer no longer pays for the org"
