"""The row rules of usage_events (migration usage_rowchecks): every writer meets them on
insert and on an update of their columns, in every partition, reported as the CHECK
constraints they replace reported them (23514 naming the constraint)."""
from __future__ import annotations

import psycopg
import pytest

from tests.support.personas import make_user, personal_org
from tests.support.pg import insert_row, raises_sqlstate, scalar, snapshot

# (column, a value the rule refuses, the constraint named, a value at its edge it accepts)
BROKEN = [
    ("kind", "batch", "usage_events_kind_check", "automation"),
    ("prompt_tokens", -1, "usage_events_prompt_tokens_check", 0),
    ("completion_tokens", -1, "usage_events_completion_tokens_check", 0),
    ("total_tokens", -1, "usage_events_total_tokens_check", 0),
    ("cached_tokens", -1, "usage_events_cached_tokens_check", 0),
    ("reasoning_tokens", -1, "usage_events_reasoning_tokens_check", 0),
    ("credits", -1, "usage_events_credits_check", 0),
]


@pytest.fixture
def org(conn):
    return personal_org(conn, make_user(conn, "usage-rules"))


def insert(conn, org, **row) -> None:
    insert_row(conn, "public.usage_events",
               {"org_id": org, "model": "gpt-4o-mini", "request_id": "req-rules", "status": "succeeded",
                "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "credits": 1, **row})


@pytest.mark.parametrize("column,bad,constraint,edge", BROKEN)
def test_a_bad_event_is_refused_on_insert_and_update(conn, org, column, bad, constraint, edge):
    insert(conn, org)
    before = snapshot(conn, "public.usage_events")
    with raises_sqlstate("23514", constraint), conn.transaction():
        insert(conn, org, **{column: bad})
    with raises_sqlstate("23514", constraint), conn.transaction():
        conn.execute(f"update public.usage_events set {column} = %s where org_id = %s", (bad, org))
    assert snapshot(conn, "public.usage_events") == before, f"{column} = {bad!r} changed nothing"

    insert(conn, org, **{column: edge})
    conn.execute(f"update public.usage_events set {column} = %s where org_id = %s", (edge, org))
    assert scalar(conn, f"select count(*) from public.usage_events where {column} = %s and org_id = %s",
                  (edge, org)) == 2, f"{column} = {edge!r} is at the rule's edge: both writes kept it"


def test_every_partition_keeps_the_rules(conn, org):
    partitions = scalar(conn, "select count(*) from pg_inherits where inhparent = 'public.usage_events'::regclass")
    assert partitions >= 2, "usage_events has monthly partitions"
    for months in (0, 13):  # this month's partition and one made ahead
        with raises_sqlstate("23514", "usage_events_credits_check"), conn.transaction():
            insert(conn, org, credits=-1, created_at=scalar(conn, "select now() + make_interval(months => %s)",
                                                            (months,)))


def test_the_error_names_its_table_and_constraint(conn, org):
    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        insert(conn, org, kind="batch")
    diag = caught.value.diag
    assert (diag.schema_name, diag.table_name, diag.constraint_name) == \
        ("public", "usage_events", "usage_events_kind_check")
