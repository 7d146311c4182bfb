"""What Stripe's events do to an organization, in the same transaction: its plan (from
the price's product), its credits (a plan change starts a period at once; a renewal
starts the next; a credit pack is a purchase grant), its billing status, and its
personal owner's role."""
from __future__ import annotations

import pytest

from tests.support.pg import scalar
from tests.support.stripe import (
    DAY,
    ENT_PRICE,
    ENT_PRODUCT,
    NEXT_PERIOD,
    NOW,
    PACK_CREDITS,
    PACK_EXPIRE_DAYS,
    PACK_PRICE,
    PERIOD,
    apply,
    catalogue,
    checkout_event,
    customer_event,
    invoice_event,
    new_id,
    org_state,
    product_event,
    role_of,
    subscription_event,
)

SUB, CUS = "sub_Effects", "cus_Effects"
ENT = (ENT_PRICE, ENT_PRODUCT)


def grants(conn, org) -> list[tuple]:
    """Open grants: (kind, amount, remaining, expires_at epoch)."""
    return conn.execute(
        "select kind::text, amount, remaining, extract(epoch from expires_at)::bigint from public.credit_grants "
        "where org_id = %s and expired_at is null order by id", (org,)).fetchall()


def spend(conn, org, credits: int) -> None:
    request = new_id("req")
    conn.execute("select public.reserve_credits(org_id := %s, request_id := %s, amount := %s)", (org, request, credits))
    conn.execute("select public.settle_credits(request_id := %s, charge := %s)", (request, credits))


@pytest.fixture
def subscribed(conn, people):
    """The owner's personal org subscribed to pro through checkout."""
    org = people.personal
    apply(conn, *catalogue(), customer_event(CUS, org_id=org),
          subscription_event(SUB, CUS, org_id=org, created=NOW - 2 * DAY, type="customer.subscription.created"),
          invoice_event("in_First", CUS, SUB, created=NOW - 2 * DAY))
    return org


def test_a_new_subscription_sets_plan_credits_status_and_premium(conn, people, subscribed):
    assert org_state(conn, subscribed) == {"plan_id": "pro", "billing_status": "active",
                                           "stripe_customer_id": CUS, "balance": 50000}
    assert grants(conn, subscribed) == [("plan", 50000, 50000, PERIOD[1])], \
        "the free grant expired; pro's 50,000 last until the period ends"
    assert role_of(conn, people.owner) == "premium"
    assert scalar(conn, "select count(*) from public.credit_ledger where org_id = %s and kind = 'expiry'",
                  (subscribed,)) == 1, "what was left of the free grant expired, on the ledger"


def test_an_upgrade_takes_effect_now(conn, people, subscribed):
    spend(conn, subscribed, 10000)
    apply(conn, subscription_event(SUB, CUS, org_id=subscribed, price=ENT, created=NOW - DAY))
    assert org_state(conn, subscribed)["plan_id"] == "enterprise"
    assert grants(conn, subscribed) == [("plan", 1000000, 1000000, PERIOD[1])], "pro's remaining 40,000 expired"
    assert org_state(conn, subscribed)["balance"] == 1000000


def test_a_plan_change_without_a_stripe_period_runs_a_utc_month_in_any_session_zone(conn, people, subscribed):
    """Berlin's clocks go forward on 2099-03-29: the month from 03-15 12:00 UTC still ends
    on 04-15 12:00 UTC, not an hour early."""
    conn.execute("update public.subscriptions set price_id = %s, product_id = %s, current_period_end = null "
                 "where id = %s", (ENT_PRICE, ENT_PRODUCT, SUB))
    conn.execute("set local timezone = 'Europe/Berlin'")
    conn.execute("select private.refresh_org_billing(%s, '2099-03-15T12:00Z')", (subscribed,))
    assert org_state(conn, subscribed)["plan_id"] == "enterprise"
    assert str(scalar(conn, "select period_end at time zone 'UTC' from public.credit_accounts where org_id = %s",
                      (subscribed,))) == "2099-04-15 12:00:00"


def test_cancel_at_period_end_keeps_the_plan_until_the_subscription_is_deleted(conn, people, subscribed):
    apply(conn, subscription_event(SUB, CUS, org_id=subscribed, created=NOW - DAY, cancel_at_period_end=True,
                                   cancel_at=PERIOD[1]))
    row = conn.execute("select cancel_at_period_end, extract(epoch from cancel_at)::bigint, status::text "
                       "from public.subscriptions where id = %s", (SUB,)).fetchone()
    assert row == (True, PERIOD[1], "active")
    assert org_state(conn, subscribed) | {"balance": None} == {
        "plan_id": "pro", "billing_status": "active", "stripe_customer_id": CUS, "balance": None}
    assert role_of(conn, people.owner) == "premium", "still paid until the period ends"

    apply(conn, subscription_event(SUB, CUS, org_id=subscribed, status="canceled", created=NOW - 60,
                                   canceled_at=NOW - 60, ended_at=NOW - 60, type="customer.subscription.deleted"))
    assert org_state(conn, subscribed) == {"plan_id": "free", "billing_status": "canceled",
                                           "stripe_customer_id": CUS, "balance": 1000}
    assert [g[:3] for g in grants(conn, subscribed)] == [("plan", 1000, 1000)], "back to free with 1,000 credits"
    assert role_of(conn, people.owner) == "user"


def test_a_failed_payment_then_recovery(conn, people, subscribed):
    apply(conn, invoice_event("in_Renew", CUS, SUB, status="open", billing_reason="subscription_cycle",
                              period=NEXT_PERIOD, created=NOW - DAY, type="invoice.payment_failed"),
          subscription_event(SUB, CUS, org_id=subscribed, status="past_due", created=NOW - DAY + 5))
    assert conn.execute("select status, amount, amount_paid from public.payments where id = 'in_Renew'"
                        ).fetchone() == ("open", 4900, 0)
    assert org_state(conn, subscribed)["billing_status"] == "past_due"
    assert org_state(conn, subscribed)["plan_id"] == "pro", "the plan stays while Stripe retries"
    assert role_of(conn, people.owner) == "premium"

    apply(conn, invoice_event("in_Renew", CUS, SUB, billing_reason="subscription_cycle", period=NEXT_PERIOD,
                              created=NOW - 60),
          subscription_event(SUB, CUS, org_id=subscribed, status="active", created=NOW - 55))
    assert scalar(conn, "select status from public.payments where id = 'in_Renew'") == "paid"
    assert org_state(conn, subscribed)["billing_status"] == "active"


def test_unpaid_ends_the_plan(conn, people, subscribed):
    apply(conn, subscription_event(SUB, CUS, org_id=subscribed, status="unpaid", created=NOW - 60))
    assert org_state(conn, subscribed) | {"balance": None} == {
        "plan_id": "free", "billing_status": "past_due", "stripe_customer_id": CUS, "balance": None}
    assert role_of(conn, people.owner) == "user"


def test_a_renewal_invoice_starts_the_next_credit_period_once(conn, people, subscribed):
    spend(conn, subscribed, 1234)
    renewal = invoice_event("in_Cycle", CUS, SUB, billing_reason="subscription_cycle", period=NEXT_PERIOD,
                            created=NOW - 60)
    apply(conn, renewal)
    assert grants(conn, subscribed) == [("plan", 50000, 50000, NEXT_PERIOD[1])], "a fresh 50,000 for the new period"
    assert org_state(conn, subscribed)["balance"] == 50000, "what was left of the old period expired"
    apply(conn, renewal | {"id": new_id("evt"), "type": "invoice.payment_succeeded"})
    assert grants(conn, subscribed) == [("plan", 50000, 50000, NEXT_PERIOD[1])], "the same renewal twice: once"


def test_an_older_renewal_never_rolls_the_period_back(conn, people, subscribed):
    apply(conn, invoice_event("in_Cycle2", CUS, SUB, billing_reason="subscription_cycle", period=NEXT_PERIOD,
                              created=NOW - 60))
    before = grants(conn, subscribed)
    apply(conn, invoice_event("in_Cycle1", CUS, SUB, billing_reason="subscription_cycle",
                              period=(NOW - 32 * DAY, NOW + DAY), created=NOW - 32 * DAY))
    assert grants(conn, subscribed) == before, "a late invoice for an earlier period grants nothing"


def test_a_renewal_for_a_plan_the_org_has_left_grants_nothing(conn, people, subscribed):
    apply(conn, subscription_event(SUB, CUS, org_id=subscribed, status="canceled", created=NOW - 60,
                                   type="customer.subscription.deleted"))
    apply(conn, invoice_event("in_Late", CUS, SUB, billing_reason="subscription_cycle", period=NEXT_PERIOD,
                              created=NOW - 30))
    assert [g[:3] for g in grants(conn, subscribed)] == [("plan", 1000, 1000)], "still the free plan's credits"


def test_a_team_subscription_changes_no_role(conn, people):
    apply(conn, *catalogue(), subscription_event(SUB, CUS, org_id=people.team))
    assert org_state(conn, people.team)["plan_id"] == "pro"
    assert role_of(conn, people.owner) == "user", "premium belongs to personal organizations"
    assert org_state(conn, people.personal)["plan_id"] == "free"


@pytest.mark.parametrize("role", ["admin", "banned"])
def test_admins_and_banned_users_keep_their_role(conn, people, role):
    conn.execute("update public.profiles set role = %s where id = %s", (role, people.owner.id))
    apply(conn, *catalogue(), subscription_event(SUB, CUS, org_id=people.personal))
    assert role_of(conn, people.owner) == role, "never promoted to premium"
    apply(conn, subscription_event(SUB, CUS, org_id=people.personal, status="canceled", created=NOW - 60))
    assert role_of(conn, people.owner) == role, "never demoted to user"


def test_a_plan_may_name_its_product(conn, people):
    product = "prod_NamedByPlan"
    conn.execute("update public.plans set stripe_product_id = %s where id = 'enterprise'", (product,))
    apply(conn, subscription_event(SUB, CUS, org_id=people.team, price=("price_NamedByPlan", product)))
    assert org_state(conn, people.team)["plan_id"] == "enterprise"


def test_a_subscription_before_its_product_gets_the_plan_when_the_product_arrives(conn, people):
    org = people.personal
    apply(conn, subscription_event(SUB, CUS, org_id=org, price=ENT))
    assert org_state(conn, org)["billing_status"] == "active"
    assert org_state(conn, org)["plan_id"] == "free", "an unknown product sells no plan yet"
    apply(conn, product_event(ENT_PRODUCT, plan="enterprise"))
    assert org_state(conn, org)["plan_id"] == "enterprise" and org_state(conn, org)["balance"] == 1000000


def test_a_product_renamed_to_another_plan_moves_its_subscribers(conn, people, subscribed):
    apply(conn, product_event("prod_TollPro", plan="enterprise", created=NOW - 60, type="product.updated"))
    assert org_state(conn, subscribed)["plan_id"] == "enterprise"


def test_checkout_links_a_subscription_that_named_no_organization(conn, people):
    org = people.team
    apply(conn, *catalogue(), subscription_event(SUB, CUS))
    assert scalar(conn, "select org_id from public.subscriptions where id = %s", (SUB,)) is None
    apply(conn, checkout_event("cs_test_Link", org_id=org, customer_id=CUS, subscription_id=SUB))
    assert scalar(conn, "select org_id from public.subscriptions where id = %s", (SUB,)) == org
    assert org_state(conn, org) | {"balance": None} == {
        "plan_id": "pro", "billing_status": "active", "stripe_customer_id": CUS, "balance": None}


def test_a_credit_pack_purchase_is_a_grant_with_its_expiry_once(conn, people):
    org = people.team
    session = checkout_event("cs_test_Pack", org_id=org, customer_id=CUS, mode="payment", created=NOW - 60,
                             metadata={"org_id": str(org), "price_id": PACK_PRICE, "quantity": "2",
                                       "credits": str(2 * PACK_CREDITS),
                                       "credits_expire_days": str(PACK_EXPIRE_DAYS)})
    apply(conn, *catalogue(), session)
    assert grants(conn, org)[-1] == ("purchase", 10000, 10000, NOW - 60 + PACK_EXPIRE_DAYS * DAY)
    assert org_state(conn, org)["balance"] == 1000 + 10000
    assert org_state(conn, org)["plan_id"] == "free", "buying credits changes no plan"
    apply(conn, session | {"id": new_id("evt")})
    assert org_state(conn, org)["balance"] == 11000, "the same session again (another event): granted once"


def test_a_credit_pack_paid_later_is_granted_when_the_payment_succeeds(conn, people):
    """Delayed payment methods: completed arrives unpaid, async_payment_succeeded paid."""
    org = people.team
    meta = {"org_id": str(org), "price_id": PACK_PRICE, "credits": str(PACK_CREDITS)}
    unpaid = checkout_event("cs_test_Later", org_id=org, customer_id=CUS, mode="payment", created=NOW - 120,
                            metadata=meta, payment_status="unpaid")
    apply(conn, *catalogue(), unpaid)
    assert org_state(conn, org)["balance"] == 1000, "nothing is granted while the payment is pending"
    paid = checkout_event("cs_test_Later", org_id=org, customer_id=CUS, mode="payment", created=NOW - 60,
                          metadata=meta, payment_status="paid")
    paid = paid | {"id": new_id("evt"), "type": "checkout.session.async_payment_succeeded"}
    apply(conn, paid)
    assert org_state(conn, org)["balance"] == 1000 + PACK_CREDITS, "granted when the payment succeeded"
    apply(conn, paid | {"id": new_id("evt")})
    assert org_state(conn, org)["balance"] == 1000 + PACK_CREDITS, "and only once"


def test_a_credit_pack_without_credits_in_its_metadata_uses_the_price(conn, people):
    org = people.team
    apply(conn, *catalogue(), checkout_event("cs_test_Mirror", org_id=org, customer_id=CUS, mode="payment",
                                             metadata={"price_id": PACK_PRICE, "quantity": "3"}))
    assert grants(conn, org)[-1][:3] == ("purchase", 15000, 15000)


@pytest.mark.parametrize("payment_status, metadata", [
    ("unpaid", {"credits": "5000"}),
    ("paid", {"price_id": "price_NotACreditPack"}),
])
def test_an_unpaid_or_credit_less_checkout_grants_nothing(conn, people, payment_status, metadata):
    org = people.team
    apply(conn, *catalogue(), checkout_event(new_id("cs"), org_id=org, customer_id=CUS, mode="payment",
                                             payment_status=payment_status, metadata=metadata))
    assert [g[0] for g in grants(conn, org)] == ["plan"]
    assert org_state(conn, org)["stripe_customer_id"] == CUS, "the customer is linked all the same"


def test_an_organization_stripe_never_billed_keeps_its_plan(conn, people):
    conn.execute("update public.organizations set plan_id = 'enterprise' where id = %s", (people.team,))
    apply(conn, *catalogue(), customer_event(CUS, org_id=people.team))
    assert org_state(conn, people.team)["plan_id"] == "enterprise", "no subscription: Stripe does not govern it"


def test_a_checkout_naming_no_organization_links_nothing(conn, people):
    [result] = apply(conn, checkout_event("cs_test_Nobody", org_id="not-a-uuid", customer_id=CUS))
    assert result["effects"]["linked"] is False
    assert scalar(conn, "select count(*) from public.stripe_customers") == 0
