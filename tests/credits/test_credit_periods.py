"""The credit ledger over time, called directly as superuser inside a rolled-back
transaction: stale reservations, expiring grants and plan periods.

After every scenario `assert_consistent` checks the invariant (tests.support.credits)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.credits import (
    ACME,
    account,
    add_grant,
    assert_consistent,
    assert_grants_cover,
    balance,
    grant,
    grants,
    ledger,
    money_snapshot,
    month_bounds,
    plan_grants,
    release,
    reservation,
    reserve,
    reserved,
    settle,
    start_plan_period,
)
from tests.support.personas import make_team, make_user, personal_org
from tests.support.pg import fails, rows, scalar

# Section - stale reservations and expiring grants


def test_stale_reservations_are_released(conn, org):
    reserve(conn, org, "r-fresh", 300)
    reserve(conn, org, "r-stale", 200, ttl_seconds=0)  # last: a later reservation would release it (below)
    result = scalar(conn, "select public.release_stale_reservations()")
    assert result == {"released_reservations": 1, "expired_grants": 0}, f"one stale hold released, got {result}"
    assert reservation(conn, "r-stale")["status"] == "released", "the expired hold is released"
    assert reservation(conn, "r-fresh")["status"] == "open", "a hold within its ttl stays open"
    assert [(e["kind"], e["amount"], e["description"]) for e in ledger(conn, org, "r-stale")] == \
        [("reservation", -200, None), ("release", 200, "stale reservation released")], "with a release row"
    assert (balance(conn, org), reserved(conn, org)) == (700, 300), "only the fresh hold remains reserved"
    again = scalar(conn, "select public.release_stale_reservations()")
    assert again == {"released_reservations": 0, "expired_grants": 0}, f"a second run does nothing, got {again}"
    assert_consistent(conn, org)


def test_the_next_reservation_releases_the_orgs_expired_holds(conn, org):
    other = personal_org(conn, make_user(conn, "other-payer"))
    reserve(conn, org, "r-crashed", 200, ttl_seconds=0)
    reserve(conn, other, "r-other-crashed", 100, ttl_seconds=0)
    reserve(conn, org, "r-open", 100)
    reserve(conn, org, "r-next", 50)
    assert reservation(conn, "r-crashed")["status"] == "released", "an expired hold is released by the next reservation"
    assert reservation(conn, "r-open")["status"] == "open", "a hold within its ttl is not"
    assert reservation(conn, "r-other-crashed")["status"] == "open", "another organization's holds are left alone"
    assert [(e["kind"], e["amount"], e["description"]) for e in ledger(conn, org, "r-crashed")] == \
        [("reservation", -200, None), ("release", 200, "stale reservation released")], "with a release row"
    assert (balance(conn, org), reserved(conn, org)) == (850, 150), "only the live holds stay reserved"
    assert_consistent(conn, org)
    assert_consistent(conn, other)


def test_stale_reservations_respect_older_than(conn, org):
    reserve(conn, org, "r-recent", 200)
    conn.execute("update public.credit_reservations set expires_at = now() - interval '30 seconds' "
                 "where request_id = 'r-recent'")
    result = scalar(conn, "select public.release_stale_reservations(older_than_seconds := 60)")
    assert result["released_reservations"] == 0, "expired 30 s ago is not older than 60 s"
    assert reservation(conn, "r-recent")["status"] == "open", "still open"
    result = scalar(conn, "select public.release_stale_reservations(older_than_seconds := 10)")
    assert result["released_reservations"] == 1, "but it is older than 10 s"
    assert_consistent(conn, org)


def test_grants_past_expiry_expire(conn, org):
    past = add_grant(conn, org, 500, "purchase", expires_at=scalar(conn, "select now() - interval '1 second'"))
    future = add_grant(conn, org, 200, "purchase", expires_at=scalar(conn, "select now() + interval '10 days'"))
    forever = add_grant(conn, org, 300, "trial")
    assert balance(conn, org) == 2000, "1000 plan + 500 + 200 + 300"
    result = scalar(conn, "select public.release_stale_reservations()")
    assert result == {"released_reservations": 0, "expired_grants": 1}, f"one grant expired, got {result}"
    g = grant(conn, past)
    assert (g["remaining"], g["expired_at"] is not None) == (0, True), f"the past grant is emptied and marked: {g}"
    expiry = [e for e in ledger(conn, org) if e["kind"] == "expiry"]
    assert [(e["amount"], e["grant_id"], e["description"]) for e in expiry] == [(-500, past, "grant expired")], \
        "one 'expiry' ledger row for what was left"
    assert grant(conn, future)["remaining"] == 200 and grant(conn, forever)["remaining"] == 300, \
        "grants not yet due (or without expiry) are untouched"
    assert balance(conn, org) == 1500, "the balance lost exactly the expired 500"
    again = scalar(conn, "select public.release_stale_reservations()")
    assert again["expired_grants"] == 0, "an expired grant is not expired twice"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


def test_expiry_never_takes_more_than_the_available_balance(conn, org):
    reserve(conn, org, "r-held", 700)
    conn.execute("update public.credit_grants set expires_at = now() - interval '1 second' where org_id = %s", (org,))
    scalar(conn, "select public.release_stale_reservations()")
    expiry = [e for e in ledger(conn, org) if e["kind"] == "expiry"]
    assert [e["amount"] for e in expiry] == [-300], f"only the 300 not held expire, got {expiry}"
    assert (balance(conn, org), reserved(conn, org)) == (0, 700), "the balance stops at zero; the hold stays"
    assert grants(conn, org)[0]["expired_at"] is not None, "the grant is marked expired"
    result = settle(conn, "r-held", 700)
    assert (result["charged"], balance(conn, org)) == (700, 0), "the hold can still be settled in full"
    assert_consistent(conn, org)


@pytest.mark.parametrize("close", ["release", "settle"])
def test_held_credits_of_an_expired_grant_do_not_outlive_it(conn, org, close):
    reserve(conn, org, "r-straddle", 300)
    conn.execute("update public.credit_grants set expires_at = now() - interval '1 second' where org_id = %s", (org,))
    scalar(conn, "select public.release_stale_reservations()")
    if close == "release":
        release(conn, "r-straddle", "upstream failed")
    else:
        settle(conn, "r-straddle", 100)
    scalar(conn, "select public.release_stale_reservations()")
    assert_consistent(conn, org)
    assert balance(conn, org) == 0, \
        f"the only grant expired, so nothing may stay spendable after the hold closes; balance {balance(conn, org)}"
    assert_grants_cover(conn, org)


def test_settlement_consumes_soonest_expiring_grants_first(conn, org):
    """Order: expires_at ascending, no expiry last, then grant id. The dates are relative to
    the plan grant's end of month so the test holds on any day of the month."""
    plan = plan_grants(conn, org)[0]
    month_end = plan["expires_at"]
    sooner = scalar(conn, "select now() + (%s - now()) / 2", (month_end,))
    later = month_end + timedelta(days=10)
    first = add_grant(conn, org, 500, "purchase", expires_at=sooner)
    tie_low = add_grant(conn, org, 200, "purchase", expires_at=later)
    no_expiry = add_grant(conn, org, 300, "trial")
    tie_high = add_grant(conn, org, 100, "purchase", expires_at=later)

    def remaining():
        return {g["id"]: g["remaining"] for g in grants(conn, org)}

    reserve(conn, org, "r-order-1", 1600)
    settle(conn, "r-order-1", 1600)
    assert remaining() == {plan["id"]: 0, first: 0, tie_low: 100, no_expiry: 300, tie_high: 100}, \
        f"1600 = the sooner purchase (500), the plan grant (1000), then 100 of the lower-id later grant: {remaining()}"
    reserve(conn, org, "r-order-2", 250)
    settle(conn, "r-order-2", 250)
    assert remaining() == {plan["id"]: 0, first: 0, tie_low: 0, no_expiry: 250, tie_high: 0}, \
        f"then the rest of the later grants (by id), and the grant without expiry last: {remaining()}"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


# Section - plan periods


def test_start_plan_period_is_idempotent_per_period(conn, org):
    start, end = month_bounds(conn)
    existing = plan_grants(conn, org)[0]["id"]
    before = money_snapshot(conn, org)
    again = start_plan_period(conn, org, "free", start, end)
    assert again == existing, "the same plan and period return the grant that already exists"
    assert money_snapshot(conn, org) == before, "and change nothing"
    nxt_start, nxt_end = end, end + timedelta(days=31)
    first = start_plan_period(conn, org, "free", nxt_start, nxt_end)
    after_first = money_snapshot(conn, org)
    second = start_plan_period(conn, org, "free", nxt_start, nxt_end)
    assert first == second, "a repeated call for a new period returns the same grant"
    assert money_snapshot(conn, org) == after_first, "and grants nothing twice"
    assert len(plan_grants(conn, org)) == 2, "one plan grant per period"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


def test_switching_plan_expires_the_old_allowance(conn, org):
    start, end = month_bounds(conn)
    reserve(conn, org, "r-spent", 200)
    settle(conn, "r-spent", 200)
    old = plan_grants(conn, org)[0]
    assert old["remaining"] == 800, "200 of the free allowance spent"
    new_id = start_plan_period(conn, org, "pro", start, end)
    old = grant(conn, old["id"])
    assert (old["remaining"], old["expired_at"] is not None) == (0, True), "the old plan grant's 800 expire"
    new = grant(conn, new_id)
    assert (new["kind"], new["amount"], new["remaining"], new["expires_at"]) == ("plan", 50000, 50000, end), \
        f"the pro allowance is granted until the period end: {new}"
    tail = [(e["kind"], e["amount"], e["grant_id"]) for e in ledger(conn, org)[-2:]]
    assert tail == [("expiry", -800, old["id"]), ("grant", 50000, new_id)], f"expiry then grant in the ledger: {tail}"
    acct = account(conn, org)
    assert (acct["balance"], acct["period_start"], acct["period_end"]) == (50000, start, end), "balance and period"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


def test_start_plan_period_moves_the_period(conn, org):
    start, end = month_bounds(conn)
    nxt_start, nxt_end = end, end + timedelta(days=30)
    start_plan_period(conn, org, "free", nxt_start, nxt_end)
    acct = account(conn, org)
    assert (acct["period_start"], acct["period_end"]) == (nxt_start, nxt_end), "credit_accounts records the new period"
    assert [(g["expires_at"], g["remaining"], g["expired_at"] is None) for g in plan_grants(conn, org)] == \
        [(end, 0, False), (nxt_end, 1000, True)], "the old allowance expired, the new one runs to the new end"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


def test_start_plan_period_refuses_an_unknown_plan(conn, org):
    start, end = month_bounds(conn)
    before = money_snapshot(conn, org)
    with fails(conn, "PT400", "unknown plan"):
        start_plan_period(conn, org, "platinum", start, end)
    assert money_snapshot(conn, org) == before, "nothing changed"


def test_a_plan_without_credits_only_expires(conn, org):
    conn.execute("insert into public.plans (id, name, monthly_credits) values ('paused', 'Paused', 0)")
    start, end = month_bounds(conn)
    assert start_plan_period(conn, org, "paused", start, end) is None, "no grant for a zero allowance"
    assert (balance(conn, org), [g["remaining"] for g in grants(conn, org)]) == (0, [0]), "the old allowance expired"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


def test_switching_back_within_a_period_expires_the_other_plan(conn, org):
    start, end = month_bounds(conn)
    start_plan_period(conn, org, "pro", start, end)  # upgrade this month
    start_plan_period(conn, org, "free", start, end)  # and back again
    live = [(g["kind"], g["amount"]) for g in grants(conn, org) if g["expired_at"] is None]
    assert ("plan", 50000) not in live, f"the pro allowance must not stay live on the free plan: {live}"
    assert balance(conn, org) <= 1000, f"a free org holds at most the free allowance, got {balance(conn, org)}"
    assert_consistent(conn, org)


def simulate_previous_month(conn, org):
    """Make the org look as if its allowance was granted last month: the period ended
    and the plan grant's idempotency key names last month's start."""
    start, _ = month_bounds(conn)
    prev_start = (start - timedelta(days=1)).replace(day=1)
    g = plan_grants(conn, org)[0]
    conn.execute("update public.credit_grants set external_id = %s, expires_at = %s where id = %s",
                 (f"plan:{org}:free:{int(prev_start.timestamp())}", start, g["id"]))
    conn.execute("update public.credit_accounts set period_start = %s, period_end = %s where org_id = %s",
                 (prev_start, start, org))
    return g["id"]


def test_ensure_current_period_rolls_an_ended_period(conn, org):
    start, end = month_bounds(conn)
    reserve(conn, org, "r-last-month", 400)
    settle(conn, "r-last-month", 400)
    old_id = simulate_previous_month(conn, org)
    conn.execute("select private.ensure_current_period(%s)", (org,))
    old = grant(conn, old_id)
    assert (old["remaining"], old["expired_at"] is not None) == (0, True), "last month's 600 left expired"
    new = [g for g in plan_grants(conn, org) if g["id"] != old_id]
    assert [(g["amount"], g["remaining"], g["expires_at"]) for g in new] == [(1000, 1000, end)], \
        f"a new free allowance for this month: {new}"
    acct = account(conn, org)
    assert (acct["balance"], acct["period_start"], acct["period_end"]) == (1000, start, end), \
        "the balance is this month's allowance and the period rolled"
    assert [(e["kind"], e["amount"]) for e in ledger(conn, org)[-2:]] == [("expiry", -600), ("grant", 1000)], \
        "expiry then grant in the ledger"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


# zones whose clocks change in March, April, September, October or November: in a month
# with a change, a month added in the session's zone ends an hour off the UTC month
@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin", "Australia/Sydney", "Pacific/Auckland"])
def test_an_ended_period_rolls_to_the_utc_month_in_any_session_zone(conn, org, zone):
    start, end = month_bounds(conn)
    simulate_previous_month(conn, org)
    conn.execute(f"set local timezone = '{zone}'")
    conn.execute("select private.ensure_current_period(%s)", (org,))
    acct = account(conn, org)
    assert (acct["period_start"], acct["period_end"]) == (start, end), f"the UTC month in {zone}"
    assert_consistent(conn, org)


def test_reserving_rolls_an_ended_period_first(conn, org):
    simulate_previous_month(conn, org)
    reserve(conn, org, "r-new-month", 100)
    assert len(plan_grants(conn, org)) == 2, "the reservation rolled the period before holding credits"
    assert balance(conn, org) == 900, "the hold comes out of this month's allowance"
    assert_consistent(conn, org)


def test_ensure_current_period_is_a_no_op_within_the_period(conn, org):
    before = money_snapshot(conn, org)
    conn.execute("select private.ensure_current_period(%s)", (org,))
    assert money_snapshot(conn, org) == before, "nothing changes while the period runs"
    assert_consistent(conn, org)
