"""Reservations are leases (issue 8): a hold whose request stopped renewing it is
released by the organization's next reservation (or the cron job) once the lease has
lapsed, a 402 caused only by such holds lasts no longer than the lease, and a request
that completes after its hold lapsed is still charged, once."""
from __future__ import annotations

from tests.support.credits import assert_consistent, balance, ledger, reservation, reserve, set_balance, settle
from tests.support.metering import begin, finish
from tests.support.pg import fails, scalar


def _lapse(conn, request_id: str) -> None:
    conn.execute("update public.credit_reservations set expires_at = now() - interval '1 second' "
                 "where request_id = %s", (request_id,))


def test_renewal_extends_only_open_leases_and_never_shortens(conn, org):
    reserve(conn, org, "l-live", 10, ttl_seconds=60)
    reserve(conn, org, "l-closed", 10, ttl_seconds=60)
    settle(conn, "l-closed", 3)
    answer = scalar(conn, "select public.renew_chat_leases(%s::jsonb, 600)", ('["l-live", "l-closed", "l-none"]',))
    assert answer == {"renewed": 1}, "only the open reservation is renewed"
    left = scalar(conn, "select extract(epoch from expires_at - now()) from public.credit_reservations "
                        "where request_id = 'l-live'")
    assert left > 590
    scalar(conn, "select public.renew_chat_leases('[\"l-live\"]'::jsonb, 5)")
    assert scalar(conn, "select extract(epoch from expires_at - now()) from public.credit_reservations "
                        "where request_id = 'l-live'") > 590, "a shorter renewal never shortens a lease"
    with fails(conn, "PT400"):
        scalar(conn, "select public.renew_chat_leases('{}'::jsonb, 60)")
    assert_consistent(conn, org)


def test_a_402_caused_by_dead_holds_ends_when_their_lease_lapses(conn, org):
    set_balance(conn, org, 100)
    reserve(conn, org, "l-dead", 100, ttl_seconds=60)  # a request whose process died
    with fails(conn, "PT402"):
        begin(conn, "l-refused", prompt_tokens_bound=10, completion_tokens_limit=10, user_id=_owner(conn, org))
    _lapse(conn, "l-dead")  # 60 s later
    began = begin(conn, "l-after", prompt_tokens_bound=10, completion_tokens_limit=10, user_id=_owner(conn, org))
    assert began["reserved"] >= 1
    dead = reservation(conn, "l-dead")
    assert (dead["status"], dead["lapsed"]) == ("released", True), "released by the next reservation, marked lapsed"
    assert_consistent(conn, org)


def test_a_request_that_completes_after_its_lease_lapsed_is_charged_once(conn, org):
    set_balance(conn, org, 1000)
    owner = _owner(conn, org)
    begin(conn, "l-late", prompt_tokens_bound=100, completion_tokens_limit=100, user_id=owner)
    _lapse(conn, "l-late")
    scalar(conn, "select public.release_stale_reservations()")
    assert balance(conn, org) == 1000, "the hold went back"
    first = finish(conn, "l-late", org, prompt_tokens=2000, completion_tokens=1000, user_id=owner)
    assert first["replayed"] is False and first["charged"] == 1 and first["late"] is True, first
    again = finish(conn, "l-late", org, prompt_tokens=2000, completion_tokens=1000, user_id=owner)
    assert again["replayed"] is True and again["charged"] == 1, "a replay charges nothing more"
    assert balance(conn, org) == 999
    kinds = [e["kind"] for e in ledger(conn, org, "l-late")]
    assert kinds == ["reservation", "release", "late_settlement"], kinds
    assert scalar(conn, "select count(*) from public.usage_events where request_id = 'l-late'") == 1
    assert_consistent(conn, org)


def test_a_late_charge_never_takes_the_balance_below_zero(conn, org):
    set_balance(conn, org, 50)
    owner = _owner(conn, org)
    begin(conn, "l-big", prompt_tokens_bound=100, completion_tokens_limit=1000, user_id=owner)
    _lapse(conn, "l-big")
    scalar(conn, "select public.release_stale_reservations()")
    set_balance(conn, org, 1)  # spent meanwhile
    result = finish(conn, "l-big", org, prompt_tokens=100_000, completion_tokens=100_000, user_id=owner)
    assert (result["charged"], result["uncollected"] > 0) == (1, True), result
    assert balance(conn, org) == 0
    assert_consistent(conn, org)


def test_a_release_by_the_proxy_is_still_final(conn, org):
    """Only a lapsed lease may be charged late: a request the proxy released (upstream
    failed before output) stays released."""
    owner = _owner(conn, org)
    begin(conn, "l-failed", prompt_tokens_bound=100, completion_tokens_limit=100, user_id=owner)
    finish(conn, "l-failed", org, status="upstream_error", http_status=502, user_id=owner)
    before = balance(conn, org)
    again = finish(conn, "l-failed", org, prompt_tokens=100, completion_tokens=100, user_id=owner)
    assert again["replayed"] is True and balance(conn, org) == before
    assert_consistent(conn, org)


def _owner(conn, org):
    return scalar(conn, "select user_id from public.organization_members where org_id = %s and role = 'owner'", (org,))
