"""Lapsed holds are looked for only once one may have lapsed (issue 8, migration
credits_sweep): the account keeps a lower bound of its earliest open lease
(`holds_lapse_at`), a reservation sweeps only when the bound has passed, and then moves
it to the earliest lease still open. Renewals never touch the account row; a lease
shortened by hand lowers the bound. (The conn fixture is one transaction: now() stands
still, so leases are moved instead of waited for.)"""
from __future__ import annotations

from tests.support.credits import assert_consistent, reservation, reserve, settle
from tests.support.pg import one, scalar


def _bound(conn, org):
    return scalar(conn, "select holds_lapse_at from public.credit_accounts where org_id = %s", (org,))


def _expires(conn, request_id: str):
    return scalar(conn, "select expires_at from public.credit_reservations where request_id = %s", (request_id,))


def test_a_reservation_moves_the_bound_to_its_lease_when_sooner(conn, org):
    reserve(conn, org, "sb-60", 10, ttl_seconds=60)
    assert _bound(conn, org) == _expires(conn, "sb-60"), "the only open lease"
    reserve(conn, org, "sb-600", 10, ttl_seconds=600)
    assert _bound(conn, org) == _expires(conn, "sb-60"), "a later lease leaves the bound where it is"
    reserve(conn, org, "sb-30", 10, ttl_seconds=30)
    assert _bound(conn, org) == _expires(conn, "sb-30"), "a sooner lease moves it"
    assert_consistent(conn, org)


def test_no_sweep_while_the_bound_is_ahead_and_the_cron_still_releases(conn, org):
    reserve(conn, org, "sb-dead", 10, ttl_seconds=60)
    conn.execute("update public.credit_reservations set expires_at = now() - interval '1 second' "
                 "where request_id = 'sb-dead'")
    # as if the bound had not seen it: a reservation does not look for lapsed holds
    conn.execute("update public.credit_accounts set holds_lapse_at = now() + interval '1 minute' where org_id = %s",
                 (org,))
    reserve(conn, org, "sb-next", 10, ttl_seconds=60)
    assert reservation(conn, "sb-dead")["status"] == "open", "no scan while the bound is in the future"
    scalar(conn, "select public.release_stale_reservations()")
    dead = reservation(conn, "sb-dead")
    assert (dead["status"], dead["lapsed"]) == ("released", True), "the cron job does not rely on the bound"
    assert_consistent(conn, org)


def test_a_shortened_lease_lowers_the_bound_and_the_next_reservation_releases_it(conn, org):
    reserve(conn, org, "sb-a", 10, ttl_seconds=600)
    reserve(conn, org, "sb-b", 10, ttl_seconds=900)
    conn.execute("update public.credit_reservations set expires_at = now() - interval '1 second' "
                 "where request_id = 'sb-a'")
    assert _bound(conn, org) == _expires(conn, "sb-a"), "the trigger moved the bound to the shortened lease"
    reserve(conn, org, "sb-c", 10, ttl_seconds=300)
    a = reservation(conn, "sb-a")
    assert (a["status"], a["lapsed"]) == ("released", True), "the next reservation swept it"
    assert reservation(conn, "sb-b")["status"] == "open", "a live lease is left alone"
    assert _bound(conn, org) == _expires(conn, "sb-c"), "the bound is the earliest lease still open"
    assert_consistent(conn, org)


def test_a_sweep_that_finds_nothing_moves_the_bound_to_the_earliest_open_lease(conn, org):
    reserve(conn, org, "sb-live", 10, ttl_seconds=900)
    reserve(conn, org, "sb-done", 10, ttl_seconds=60)
    settle(conn, "sb-done", 4)
    assert _bound(conn, org) == _expires(conn, "sb-done"), "a closed hold leaves the bound early (a lower bound)"
    conn.execute("update public.credit_accounts set holds_lapse_at = now() - interval '1 second' where org_id = %s",
                 (org,))  # its moment came
    reserve(conn, org, "sb-new", 10, ttl_seconds=1200)
    assert _bound(conn, org) == _expires(conn, "sb-live"), "recomputed from the open leases"
    assert [reservation(conn, r)["status"] for r in ("sb-live", "sb-new")] == ["open", "open"]
    assert_consistent(conn, org)


def test_renewing_a_lease_never_touches_the_account_row(conn, org):
    reserve(conn, org, "sb-renew", 10, ttl_seconds=60)
    before = one(conn, "select ctid::text, holds_lapse_at from public.credit_accounts where org_id = %s", (org,))
    assert scalar(conn, "select public.renew_chat_leases('[\"sb-renew\"]'::jsonb, 600)") == {"renewed": 1}
    after = one(conn, "select ctid::text, holds_lapse_at from public.credit_accounts where org_id = %s", (org,))
    assert after == before, "renewal only moves leases later: the bound stays a lower bound, the row unwritten"
    assert _expires(conn, "sb-renew") > before["holds_lapse_at"]


def test_an_unknown_bound_sweeps(conn, org):
    reserve(conn, org, "sb-old", 10, ttl_seconds=60)
    conn.execute("alter table public.credit_reservations disable trigger credit_reservations_lower_holds_lapse_at")
    conn.execute("update public.credit_reservations set expires_at = now() - interval '1 second' "
                 "where request_id = 'sb-old'")
    conn.execute("alter table public.credit_reservations enable trigger credit_reservations_lower_holds_lapse_at")
    conn.execute("update public.credit_accounts set holds_lapse_at = null where org_id = %s", (org,))
    reserve(conn, org, "sb-after", 10, ttl_seconds=60)
    assert reservation(conn, "sb-old")["status"] == "released", "an account without a bound (older rows) is swept"
    assert _bound(conn, org) == _expires(conn, "sb-after")
    assert_consistent(conn, org)
