"""Taking credits from a grant touches no index (issue 8, migration credits_hot): the
indexes of grants with credits left are partial on the stored `has_remaining`, which
changes only when a grant empties or is refilled, so a settlement's update of
`remaining` is a HOT update. Counted with the transaction's own statistics
(pg_stat_get_xact_tuples_hot_updated), since the conn fixture is one transaction."""
from __future__ import annotations

from tests.support.credits import assert_consistent, grants, reserve, settle
from tests.support.pg import rows, scalar


def _updates(conn) -> tuple[int, int]:
    """Updates of credit_grants in this transaction so far: (all, HOT)."""
    r = rows(conn, "select pg_stat_get_xact_tuples_updated('public.credit_grants'::regclass) as n, "
                   "pg_stat_get_xact_tuples_hot_updated('public.credit_grants'::regclass) as hot")[0]
    return r["n"], r["hot"]


def test_settlements_update_grants_without_touching_an_index(conn, org):
    before = _updates(conn)
    for i in range(5):
        reserve(conn, org, f"hot-{i}", 20)
        settle(conn, f"hot-{i}", 7)
    n, hot = (a - b for a, b in zip(_updates(conn), before, strict=True))
    assert n == 5, "each settlement took its charge from one grant"
    assert hot == n, "every one of those updates was HOT (no indexed value changed)"
    (g,) = [g for g in grants(conn, org) if g["has_remaining"]]
    assert g["remaining"] == 1000 - 35 and g["has_remaining"], "the grant gave exactly what was charged"
    assert_consistent(conn, org)


def test_an_emptied_grant_leaves_the_open_grants_and_is_not_taken_from_again(conn, org):
    reserve(conn, org, "empty-1", 1000)
    settle(conn, "empty-1", 1000)
    (g,) = grants(conn, org)
    assert (g["remaining"], g["has_remaining"]) == (0, False), "has_remaining follows remaining"
    scalar(conn, "select public.grant_credits(%s, 'purchase', 50, null, 'hot-buy', 'pack')", (org,))
    reserve(conn, org, "empty-2", 30)
    settle(conn, "empty-2", 30)
    by_kind = {g["kind"]: g["remaining"] for g in grants(conn, org)}
    assert by_kind == {"plan": 0, "purchase": 20}, "the charge came from the grant with credits left"
    assert_consistent(conn, org)


def test_the_open_grants_index_answers_the_settlement_query(conn, org):
    conn.execute("set local enable_seqscan = off")
    plan = "\n".join(r["QUERY PLAN"] for r in rows(
        conn, "explain select x.id from public.credit_grants x where x.org_id = %s and x.has_remaining", (org,)))
    assert "credit_grants_org_open_idx" in plan, plan
