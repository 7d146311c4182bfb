"""The lean hot path's rules (issue 8): begin commits asynchronously and finish
durably, a finish whose reservation a Postgres crash took still charges (once, capped at
the balance), and a key's budget and rate window move in one update as a call closes."""
from __future__ import annotations

from decimal import Decimal

from tests.support.credits import assert_consistent, balance, ledger, money_snapshot, reservation, set_balance
from tests.support.metering import begin, ceil, create_key, credits_per_usd, finish, price
from tests.support.pg import one, scalar


def expected_cost(conn, model: str, prompt: int, completion: int) -> Decimal:
    p = price(conn, model)
    return (prompt * p["input_usd_per_1m"] + completion * p["output_usd_per_1m"]) / Decimal(1_000_000)


def key_row(conn, key_id) -> dict:
    return one(conn, "select * from public.api_keys where id = %s", (key_id,))


def test_begin_commits_asynchronously_and_finish_durably(conn, cast):
    """A reservation only holds credits, so begin never waits for the WAL flush; finish
    charges, so it waits (the zero-loss default), which also makes begin's writes durable."""
    with conn.transaction():
        begin(conn, "cm-1", completion_tokens_limit=10, user_id=cast.owner.id, org_id=cast.team)
        assert scalar(conn, "select current_setting('synchronous_commit')") == "off", "begin: asynchronous"
    with conn.transaction():
        finish(conn, "cm-1", cast.team, prompt_tokens=10, completion_tokens=5)
        assert scalar(conn, "select current_setting('synchronous_commit')") == "on", "finish: waits for the flush"
    conn.execute("update private.app_settings set value = 'off' where key = 'metering_synchronous_commit'")
    with conn.transaction():
        begin(conn, "cm-2", completion_tokens_limit=10, user_id=cast.owner.id, org_id=cast.team)
        finish(conn, "cm-2", cast.team, prompt_tokens=10, completion_tokens=5)
        assert scalar(conn, "select current_setting('synchronous_commit')") == "off", "the setting can trade it away"
    assert_consistent(conn, cast.team)


def test_finish_charges_a_reservation_a_crash_took(conn, cast):
    """begin committed asynchronously and Postgres crashed before the flush: the
    reservation is gone (the database is as if begin never ran) but the proxy holds the
    grant and the call completed. finish, told what was reserved, charges it late,
    once."""
    before = balance(conn, cast.team)
    result = finish(conn, "crash-1", cast.team, prompt_tokens=1000, completion_tokens=500, reserved=40,
                    user_id=cast.owner.id)
    charge = ceil(expected_cost(conn, "gpt-4o-mini", 1000, 500) * credits_per_usd(conn))
    assert (result["status"], result["charged"], result["replayed"], result.get("late")) == \
        ("settled", charge, False, True), f"charged late: {result}"
    assert balance(conn, cast.team) == before - charge == result["remaining"], "the balance paid the charge"
    assert [(e["kind"], e["amount"]) for e in ledger(conn, cast.team, "crash-1")] == [("late_settlement", -charge)]
    r = reservation(conn, "crash-1")
    assert (r["status"], r["charged"], r["amount"]) == ("settled", charge, 0), "a closed row keeps it idempotent"
    assert scalar(conn, "select count(*) from public.usage_events where request_id = 'crash-1'") == 1
    assert scalar(conn, "select count(*) from public.api_requests where request_id = 'crash-1'") == 1

    again = finish(conn, "crash-1", cast.team, prompt_tokens=1000, completion_tokens=500, reserved=40)
    assert (again["replayed"], again["charged"]) == (True, charge), "the outbox replaying it charges nothing more"
    assert balance(conn, cast.team) == before - charge
    assert scalar(conn, "select count(*) from public.usage_events where request_id = 'crash-1'") == 1
    assert_consistent(conn, cast.team)


def test_a_lost_reservation_is_charged_no_more_than_the_balance(conn, cast):
    set_balance(conn, cast.team, 3)
    result = finish(conn, "crash-2", cast.team, "gpt-4o", prompt_tokens=100_000, completion_tokens=10_000, reserved=1)
    assert (result["charged"], result["remaining"]) == (3, 0), f"capped at the balance: {result}"
    assert result["uncollected"] > 0
    u = one(conn, "select credits, metadata from public.usage_events where request_id = 'crash-2'")
    assert u["credits"] == 3 and u["metadata"]["uncollected_credits"] == result["uncollected"]
    assert_consistent(conn, cast.team)


def test_a_lost_reservation_of_a_failed_call_charges_nothing(conn, cast):
    before = money_snapshot(conn, cast.team)
    result = finish(conn, "crash-3", cast.team, status="upstream_error", http_status=502, reserved=40, error="boom")
    assert (result["status"], result["replayed"]) == ("released", False)
    assert money_snapshot(conn, cast.team)["account"] == before["account"], "nothing moved"
    assert ledger(conn, cast.team, "crash-3") == []
    assert_consistent(conn, cast.team)


def test_a_keys_unused_tokens_go_back_to_its_window_as_the_call_closes(conn, cast):
    """One update of the key at finish: its budget and its rate window together."""
    k = create_key(conn, cast.owner, cast.team, name="tpm key")
    conn.execute("update public.api_keys set tpm = 100000, credit_limit = 500 where id = %s", (k["id"],))
    began = begin(conn, "tpm-1", prompt_tokens_bound=1000, completion_tokens_limit=200, key=k["key"])
    row = key_row(conn, k["id"])
    assert (row["rate_tokens"], row["budget_reserved"]) == (1200, began["reserved"]), "counted at the worst case"
    done = finish(conn, "tpm-1", cast.team, prompt_tokens=300, completion_tokens=20, api_key_id=k["id"])
    row = key_row(conn, k["id"])
    assert (row["rate_tokens"], row["budget_reserved"], row["budget_spent"]) == (320, 0, done["charged"]), \
        f"the window keeps what was used, the budget what was charged: {row}"
    assert reservation(conn, "tpm-1")["used_tokens"] == 320
