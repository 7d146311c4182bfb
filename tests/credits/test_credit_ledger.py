"""The credit ledger, called directly as superuser inside a rolled-back transaction:
allowances, reservations, settlement, release and grants (expiry and plan periods:
test_credit_periods.py).

After every scenario `assert_consistent` checks the invariant: the ledger sums to the
balance (row by row), `reserved` is the open reservations, nothing is below zero and
no reservation is closed twice."""
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
