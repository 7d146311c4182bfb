"""The hold and close helpers with fewer statements (issue 8, migration credits_lean):
hold_credits takes the key's budget flag from its caller (and looks it up without it),
writes its ledger row itself, and close_reservation answers null for a missing
reservation only when asked to (`missing_ok`), PT404 otherwise, changing nothing."""
from __future__ import annotations

import pytest

from tests.support.credits import assert_consistent, balance, ledger, money_snapshot, reservation
from tests.support.metering import create_key
from tests.support.pg import raises_sqlstate, scalar


def hold(conn, org, request_id: str, amount: int, key_id=None, **kw) -> int:
    named = "".join(f", {k} := %({k})s" for k in kw)
    return scalar(conn, "select private.hold_credits(org := %(org)s, request_id := %(rid)s, amount := %(amount)s, "
                        f"ttl_seconds := 60, api_key_id := %(key)s{named})",
                  {"org": org, "rid": request_id, "amount": amount, "key": key_id, **kw})


@pytest.mark.parametrize(("given", "expected"), [(None, True), (True, True), (False, False)])
def test_the_budget_flag_is_the_callers_or_looked_up(conn, cast, given, expected):
    key = create_key(conn, cast.owner, cast.team, credit_limit=1000)
    kw = {} if given is None else {"key_budgeted": given}
    scalar(conn, "select private.prepare_account(%s)", (cast.team,))
    hold(conn, cast.team, f"budget-{given}", 5, key["id"], **kw)
    assert reservation(conn, f"budget-{given}")["key_budgeted"] is expected


def test_a_hold_without_a_key_never_joins_a_budget(conn, cast):
    scalar(conn, "select private.prepare_account(%s)", (cast.team,))
    hold(conn, cast.team, "no-key", 5, None, key_budgeted=True)
    assert reservation(conn, "no-key")["key_budgeted"] is False


def test_a_hold_writes_its_ledger_row(conn, cast):
    before = balance(conn, cast.team)
    scalar(conn, "select private.prepare_account(%s)", (cast.team,))
    after = hold(conn, cast.team, "ledgered", 7)
    assert after == before - 7 == balance(conn, cast.team)
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in ledger(conn, cast.team, "ledgered")] == \
        [("reservation", -7, after)]
    assert_consistent(conn, cast.team)


def test_close_reservation_of_a_missing_request_is_404_or_null_when_asked(conn, cast):
    before = money_snapshot(conn, cast.team)
    with raises_sqlstate("PT404", "no reservation"), conn.transaction():
        conn.execute("select private.close_reservation('nowhere', 5, null, %s)", (cast.team,))
    assert scalar(conn, "select private.close_reservation('nowhere', 5, null, %s, missing_ok := true)",
                  (cast.team,)) is None
    assert money_snapshot(conn, cast.team) == before, "nothing changed"


def test_close_reservation_answers_the_balance_it_wrote(conn, cast):
    scalar(conn, "select private.prepare_account(%s)", (cast.team,))
    hold(conn, cast.team, "closing", 20)
    result = scalar(conn, "select private.close_reservation('closing', 3, null, %s, missing_ok := true)",
                    (cast.team,))
    assert (result["status"], result["charged"], result["remaining"]) == ("settled", 3, balance(conn, cast.team))
    assert_consistent(conn, cast.team)
