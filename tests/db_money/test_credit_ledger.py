"""The credit ledger, called directly as superuser inside a rolled-back transaction:
allowances, reservations, settlement, release, expiry, plan periods and grants.

After every scenario `assert_consistent` checks the invariant: the ledger sums to the
balance (row by row), `reserved` is the open reservations, nothing is below zero and
no reservation is closed twice."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.db_money.helpers import (
    ACME,
    account,
    add_grant,
    assert_consistent,
    assert_grants_cover,
    balance,
    fails,
    grant,
    grants,
    ledger,
    money_snapshot,
    month_bounds,
    release,
    reservation,
    reserve,
    reserved,
    rows,
    settle,
)
from tests.pg import make_team, make_user, personal_org, scalar


@pytest.fixture
def org(conn):
    """A new user's personal organization: free plan, 1000 credits."""
    return personal_org(conn, make_user(conn, "payer"))


def plan_grants(conn, org) -> list[dict]:
    return [g for g in grants(conn, org) if g["kind"] == "plan"]


def start_plan_period(conn, org, plan: str, start, end):
    return scalar(conn, "select private.start_plan_period(%s, %s, %s, %s)", (org, plan, start, end))


# Section - allowances


def assert_fresh_allowance(conn, org, credits: int) -> None:
    start, end = month_bounds(conn)
    acct = account(conn, org)
    assert (acct["balance"], acct["reserved"]) == (credits, 0), f"a new org holds {credits} credits, none reserved"
    assert (acct["period_start"], acct["period_end"]) == (start, end), "its period is the current UTC calendar month"
    found = grants(conn, org)
    assert len(found) == 1, f"exactly one grant, got {found}"
    g = found[0]
    assert (g["kind"], g["amount"], g["remaining"]) == ("plan", credits, credits), "a whole plan grant"
    assert g["expires_at"] == end, f"the plan grant expires at the end of the month (UTC), got {g['expires_at']}"
    assert g["expired_at"] is None, "the plan grant is live"
    entries = ledger(conn, org)
    assert [(e["kind"], e["amount"], e["grant_id"]) for e in entries] == [("grant", credits, g["id"])], \
        "one ledger row: the grant"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


def test_new_personal_org_holds_the_free_allowance(conn, org):
    assert scalar(conn, "select plan_id from public.organizations where id = %s", (org,)) == "free", "free plan"
    assert_fresh_allowance(conn, org, 1000)


def test_new_team_org_on_the_free_plan_holds_no_allowance(conn):
    team = make_team(conn, make_user(conn, "founder"), allowance=0)
    start, end = month_bounds(conn)
    acct = account(conn, team)
    assert (acct["balance"], acct["period_start"], acct["period_end"]) == (0, start, end), \
        "the free allowance is personal: a team on the free plan starts the month with none"
    assert grants(conn, team) == [] and ledger(conn, team) == [], "no grant, no ledger row"


def test_seeded_acme_holds_the_pro_allowance(conn):
    assert scalar(conn, "select plan_id from public.organizations where id = %s", (ACME,)) == "pro", "Acme is on pro"
    acct = account(conn, ACME)
    assert acct["balance"] == 50000, f"Acme holds the pro allowance, got {acct['balance']}"
    assert [(g["kind"], g["remaining"]) for g in grants(conn, ACME)] == [("plan", 50000)], "one pro plan grant"
    assert_consistent(conn, ACME)


# Section - reserve, settle, release


def test_reserve_holds_credits(conn, org):
    result = reserve(conn, org, "r-hold", 300)
    assert result == {"remaining": 700, "reserved": 300}, f"reserve_credits reports the hold, got {result}"
    assert (balance(conn, org), reserved(conn, org)) == (700, 300), "the balance drops and reserved rises"
    entry = ledger(conn, org, "r-hold")
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in entry] == [("reservation", -300, 700)], \
        "one 'reservation' ledger row for the request"
    r = reservation(conn, "r-hold")
    assert (r["org_id"], r["amount"], r["status"], r["charged"]) == (org, 300, "open", None), "an open reservation"
    ttl = scalar(conn, "select expires_at - now() from public.credit_reservations where request_id = 'r-hold'")
    assert ttl == timedelta(seconds=900), f"the default hold lasts 15 minutes, got {ttl}"
    assert [g["remaining"] for g in grants(conn, org)] == [1000], "a hold consumes no grant yet"
    assert_consistent(conn, org)


def test_settle_returns_the_unused_part_and_consumes_grants(conn, org):
    reserve(conn, org, "r-settle", 300)
    result = settle(conn, "r-settle", 120)
    assert result == {"org_id": str(org), "charged": 120, "status": "settled", "remaining": 880,
                      "uncollected": 0, "replayed": False}, f"settle reports the charge, got {result}"
    assert (balance(conn, org), reserved(conn, org)) == (880, 0), "the unused 180 return, nothing stays reserved"
    entries = ledger(conn, org, "r-settle")
    assert [(e["kind"], e["amount"]) for e in entries] == [("reservation", -300), ("settlement", 180)], \
        "a settlement row returns hold minus charge"
    r = reservation(conn, "r-settle")
    assert (r["status"], r["charged"]) == ("settled", 120) and r["closed_at"] is not None, "the reservation is closed"
    assert [g["remaining"] for g in grants(conn, org)] == [880], "the charge is consumed from the plan grant"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


def test_settle_twice_is_a_replay(conn, org):
    reserve(conn, org, "r-twice", 300)
    first = settle(conn, "r-twice", 120)
    before = money_snapshot(conn, org)
    again = settle(conn, "r-twice", 120)
    assert again["replayed"] is True and again["charged"] == first["charged"] == 120, \
        f"the second settle replays the first charge, got {again}"
    different = settle(conn, "r-twice", 999)
    assert different["replayed"] is True and different["charged"] == 120, \
        f"a replay with another charge still reports the recorded one, got {different}"
    assert money_snapshot(conn, org) == before, "replays change nothing"
    assert_consistent(conn, org)


def test_release_after_settle_is_a_no_op(conn, org):
    reserve(conn, org, "r-late-release", 300)
    settle(conn, "r-late-release", 100)
    before = money_snapshot(conn, org)
    result = release(conn, "r-late-release", "too late")
    assert result["replayed"] is True and result["status"] == "settled", f"release of a settled hold replays: {result}"
    assert money_snapshot(conn, org) == before, "and changes nothing"
    assert_consistent(conn, org)


def test_release_returns_the_whole_hold(conn, org):
    reserve(conn, org, "r-release", 300)
    result = release(conn, "r-release", "upstream failed")
    assert result == {"org_id": str(org), "status": "released", "remaining": 1000, "replayed": False}, \
        f"release reports the restored balance, got {result}"
    assert (balance(conn, org), reserved(conn, org)) == (1000, 0), "everything comes back"
    entries = ledger(conn, org, "r-release")
    assert [(e["kind"], e["amount"], e["description"]) for e in entries] == \
        [("reservation", -300, None), ("release", 300, "upstream failed")], "a release row with the reason"
    r = reservation(conn, "r-release")
    assert (r["status"], r["charged"]) == ("released", 0) and r["closed_at"] is not None, "closed with no charge"
    before = money_snapshot(conn, org)
    assert release(conn, "r-release")["replayed"] is True, "a second release replays"
    assert settle(conn, "r-release", 50) == {"org_id": str(org), "charged": 0, "status": "released",
                                               "remaining": 1000, "replayed": True}, "a settle after release replays"
    assert money_snapshot(conn, org) == before, "the replays changed nothing"
    assert [g["remaining"] for g in grants(conn, org)] == [1000], "a release consumes no grant"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


@pytest.mark.parametrize("state", ["open", "settled", "released"])
def test_reusing_a_request_id_is_refused(conn, org, state):
    other = personal_org(conn, make_user(conn, "other-payer"))
    reserve(conn, org, "r-reused", 100)
    if state == "settled":
        settle(conn, "r-reused", 10)
    elif state == "released":
        release(conn, "r-reused")
    before, before_other = money_snapshot(conn, org), money_snapshot(conn, other)
    with fails(conn, "PT409", "already used"):
        reserve(conn, org, "r-reused", 50)
    with fails(conn, "PT409", "already used"):
        reserve(conn, other, "r-reused", 50)
    assert (money_snapshot(conn, org), money_snapshot(conn, other)) == (before, before_other), \
        "the refused reservations changed nothing in either organization"
    assert_consistent(conn, org)
    assert_consistent(conn, other)


def test_unknown_request_id_is_404(conn, org):
    before = money_snapshot(conn, org)
    with fails(conn, "PT404", "no reservation"):
        settle(conn, "r-never-reserved", 10)
    with fails(conn, "PT404", "no reservation"):
        release(conn, "r-never-reserved")
    assert money_snapshot(conn, org) == before, "nothing changed"
    assert_consistent(conn, org)


def test_reserving_more_than_the_balance_is_402(conn, org):
    reserve(conn, org, "r-most", 900)
    before = money_snapshot(conn, org)
    with fails(conn, "PT402", "insufficient credits"):
        reserve(conn, org, "r-too-much", 101)
    assert money_snapshot(conn, org) == before, "the refused reservation changed nothing"
    assert reservation(conn, "r-too-much") is None, "no reservation row was left behind"
    reserve(conn, org, "r-exact", 100)
    assert balance(conn, org) == 0, "reserving exactly the balance is allowed and leaves 0"
    assert_consistent(conn, org)


def test_reserving_zero_is_allowed_and_negative_is_400(conn, org):
    reserve(conn, org, "r-zero", 0)
    assert reservation(conn, "r-zero")["status"] == "open", "a zero hold is a reservation"
    before = money_snapshot(conn, org)
    with fails(conn, "PT400"):
        reserve(conn, org, "r-negative", -5)
    assert money_snapshot(conn, org) == before, "a negative hold changed nothing"
    assert_consistent(conn, org)


def test_charge_above_the_hold_is_taken_when_affordable(conn, org):
    reserve(conn, org, "r-over", 100)
    result = settle(conn, "r-over", 250)
    assert (result["charged"], result["uncollected"], result["remaining"]) == (250, 0, 750), \
        f"the whole charge is taken while the balance has it, got {result}"
    assert [(e["kind"], e["amount"]) for e in ledger(conn, org, "r-over")] == \
        [("reservation", -100), ("settlement", -150)], "the settlement row takes the difference"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


def test_charge_above_what_the_balance_has_is_capped(conn, org):
    reserve(conn, org, "r-capped", 100)
    reserve(conn, org, "r-other", 850)  # leaves 50 spendable
    result = settle(conn, "r-capped", 400)
    assert (result["charged"], result["uncollected"], result["remaining"]) == (150, 250, 0), \
        f"only hold + balance (150) is taken, 250 reported uncollected, got {result}"
    assert balance(conn, org) == 0, "the balance stops at zero, never below"
    entry = ledger(conn, org, "r-capped")[-1]
    assert (entry["kind"], entry["amount"]) == ("settlement", -50), "the settlement row takes the last 50"
    assert "uncollected 250" in (entry["description"] or ""), f"the ledger row says what was uncollected: {entry}"
    assert reservation(conn, "r-capped")["charged"] == 150, "the reservation records what was charged"
    settle(conn, "r-other", 850)
    assert [g["remaining"] for g in grants(conn, org)] == [0], "both charges were consumed from the grant"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


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


# Section - grants and the ledger itself


def test_grant_credits_is_idempotent_by_external_id(conn, org):
    first = scalar(conn, "select public.grant_credits(org_id := %s, kind := 'purchase', amount := 5000, "
                         "external_id := 'stripe:cs_test_1', description := 'pack')", (org,))
    after_first = money_snapshot(conn, org)
    second = scalar(conn, "select public.grant_credits(org_id := %s, kind := 'purchase', amount := 5000, "
                          "external_id := 'stripe:cs_test_1', description := 'pack')", (org,))
    assert first == second and "grant_id" in first, f"the same external id returns the same grant: {first} {second}"
    assert money_snapshot(conn, org) == after_first, "the second call changes nothing"
    assert balance(conn, org) == 6000, "the pack was granted once"
    entry = ledger(conn, org)[-1]
    assert (entry["kind"], entry["amount"], entry["grant_id"], entry["description"]) == \
        ("grant", 5000, first["grant_id"], "pack"), "one grant ledger row"
    other = scalar(conn, "select public.grant_credits(org_id := %s, kind := 'purchase', amount := 5000, "
                         "external_id := 'stripe:cs_test_2')", (org,))
    assert other != first and balance(conn, org) == 11000, "another external id is another grant"
    assert_consistent(conn, org)
    assert_grants_cover(conn, org)


@pytest.mark.parametrize("amount", [0, -10])
def test_grants_must_be_positive(conn, org, amount):
    before = money_snapshot(conn, org)
    with fails(conn, "PT400", "positive"):
        scalar(conn, "select public.grant_credits(org_id := %s, kind := 'adjustment', amount := %s)", (org, amount))
    assert money_snapshot(conn, org) == before, "nothing changed"


def test_ledger_rows_cannot_be_updated(conn, org):
    before = ledger(conn, org)
    with fails(conn, "42501", "append-only"):
        conn.execute("update public.credit_ledger set amount = amount + 1000 where org_id = %s", (org,))
    assert ledger(conn, org) == before, "the ledger is unchanged"
    assert_consistent(conn, org)


def test_ledger_rows_cannot_be_deleted(conn, org):
    before = ledger(conn, org)
    with fails(conn, "42501", "append-only"):
        conn.execute("delete from public.credit_ledger where org_id = %s", (org,))
    assert ledger(conn, org) == before, "the ledger is unchanged"
    assert_consistent(conn, org)


def test_ledger_goes_with_its_organization(conn):
    team = make_team(conn, make_user(conn, "short-lived"))
    reserve(conn, team, "r-gone", 10)
    conn.execute("delete from public.organizations where id = %s", (team,))
    left = rows(conn, "select 'ledger' from public.credit_ledger where org_id = %(o)s union all "
                      "select 'grant' from public.credit_grants where org_id = %(o)s union all "
                      "select 'reservation' from public.credit_reservations where org_id = %(o)s union all "
                      "select 'account' from public.credit_accounts where org_id = %(o)s", {"o": team})
    assert left == [], f"deleting the organization removes its credit rows, left {left}"
