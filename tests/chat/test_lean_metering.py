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
    conn.execute("update public.api_keys set tpm = 100000, credit_limit = 500, credit_limit_period = '30d' "
                 "where id = %s", (k["id"],))
    began = begin(conn, "tpm-1", prompt_tokens_bound=1000, completion_tokens_limit=200, key=k["key"])
    row = key_row(conn, k["id"])
    assert (row["rate_tokens"], row["budget_reserved"]) == (1200, began["reserved"]), "counted at the worst case"
    done = finish(conn, "tpm-1", cast.team, prompt_tokens=300, completion_tokens=20, api_key_id=k["id"])
    row = key_row(conn, k["id"])
    assert (row["rate_tokens"], row["budget_reserved"], row["budget_spent"]) == (320, 0, done["charged"]), \
        f"the window keeps what was used, the budget what was charged: {row}"
    assert reservation(conn, "tpm-1")["used_tokens"] == 320


def test_closing_a_call_of_a_key_without_limits_writes_nothing_to_the_key(conn, cast):
    """Migration chat_keyclose: no budget, no token window: the key's row is left alone."""
    k = create_key(conn, cast.owner, cast.team, name="plain key")
    begin(conn, "plain-1", prompt_tokens_bound=100, completion_tokens_limit=20, key=k["key"])
    assert reservation(conn, "plain-1")["key_budgeted"] is False
    before = one(conn, "select xmin::text as v, * from public.api_keys where id = %s", (k["id"],))
    finish(conn, "plain-1", cast.team, prompt_tokens=50, completion_tokens=10, api_key_id=k["id"])
    after = one(conn, "select xmin::text as v, * from public.api_keys where id = %s", (k["id"],))
    assert after == before, "no write of the key's row"
    assert_consistent(conn, cast.team)


def test_a_limit_set_while_a_call_runs_counts_its_charge_but_not_its_hold(conn, cast):
    """The hold never joined budget_reserved (no limit when it began): it does not leave it;
    what the call charged counts against the limit set meanwhile."""
    k = create_key(conn, cast.owner, cast.team, name="late limit")
    begin(conn, "late-1", prompt_tokens_bound=100, completion_tokens_limit=20, key=k["key"])
    conn.execute("update public.api_keys set credit_limit = 100000, budget_reserved = 7 where id = %s", (k["id"],))
    done = finish(conn, "late-1", cast.team, prompt_tokens=50, completion_tokens=10, api_key_id=k["id"])
    row = key_row(conn, k["id"])
    assert row["budget_reserved"] == 7, "another hold's share stays"
    assert row["budget_spent"] == done["charged"] > 0
    assert_consistent(conn, cast.team)
