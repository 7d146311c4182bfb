"""The row rules of credit_reservations (migration credits_rowchecks): every writer meets
them on insert and on an update of their columns, reported as the CHECK constraints they
replace reported them (23514 naming the constraint); a lease renewal, which sets only
expires_at, does not run them."""
from __future__ import annotations

import psycopg
import pytest

from tests.support.pg import insert_row, raises_sqlstate, scalar, snapshot

# (column, a value the rule refuses, the constraint named, a value at its edge it accepts)
BROKEN = [
    ("request_id", "", "credit_reservations_request_id_check", "r" * 200),
    ("request_id", "r" * 201, "credit_reservations_request_id_check", "r"),
    ("amount", -1, "credit_reservations_amount_check", 0),
    ("status", "lost", "credit_reservations_status_check", "released"),
    ("charged", -1, "credit_reservations_charged_check", 0),
    ("used_tokens", -1, "credit_reservations_used_tokens_check", 0),
]


def insert(conn, org, **row) -> None:
    insert_row(conn, "public.credit_reservations",
               {"request_id": "req-rules", "org_id": org, "amount": 5, "expires_at": "2100-01-01", **row})


@pytest.mark.parametrize("column,bad,constraint,edge", BROKEN)
def test_a_bad_row_is_refused_on_insert_and_update(conn, org, column, bad, constraint, edge):
    insert(conn, org)
    before = snapshot(conn, "public.credit_reservations")
    with raises_sqlstate("23514", constraint), conn.transaction():
        insert(conn, org, **{"request_id": "req-other", column: bad})
    with raises_sqlstate("23514", constraint), conn.transaction():
        conn.execute(f"update public.credit_reservations set {column} = %s where request_id = 'req-rules'", (bad,))
    assert snapshot(conn, "public.credit_reservations") == before, f"{column} = {bad!r} changed nothing"

    # the request id is the key: the update takes another id of the edge's length
    updated = "q" * len(edge) if column == "request_id" else edge
    insert(conn, org, **{"request_id": "req-edge", column: edge})
    conn.execute(f"update public.credit_reservations set {column} = %s where request_id = 'req-rules'", (updated,))
    assert scalar(conn, f"select count(*) from public.credit_reservations where {column} in (%s, %s) and org_id = %s",
                  (edge, updated, org)) == 2, f"{column} = {edge!r} is at the rule's edge: both writes kept it"


def test_the_error_names_its_table_and_constraint(conn, org):
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        insert(conn, org, amount=-5)
    diag = caught.value.diag
    assert (diag.schema_name, diag.table_name, diag.constraint_name) == \
        ("public", "credit_reservations", "credit_reservations_amount_check")


def _rule_runs(conn) -> int:
    return scalar(conn, "select coalesce(sum(calls), 0) from pg_stat_xact_user_functions "
                        "where schemaname = 'private' and funcname = 'check_reservation_row'")


def test_a_lease_renewal_does_not_run_the_rules(conn, org):
    conn.execute("set local track_functions = 'pl'")
    insert(conn, org)
    start = _rule_runs(conn)
    assert start == 1, "the insert ran them once"
    conn.execute("update public.credit_reservations set expires_at = expires_at + interval '1 minute' "
                 "where request_id = 'req-rules'")
    assert _rule_runs(conn) == start, "a lease renewal does not run them"
    conn.execute("update public.credit_reservations set status = 'released', charged = 0 where request_id = 'req-rules'")
    assert _rule_runs(conn) == start + 1, "closing the reservation runs them once"
