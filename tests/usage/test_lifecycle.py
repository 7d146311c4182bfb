"""The lifecycle job, each step with counts: stale reservations, credit periods exactly
at the boundary (the 31st, February, leap years), credit expiry as ledger rows,
api_requests retention, partitions ahead and dropped only once rolled up."""
from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from tests.support.credits import add_grant, assert_consistent, ledger, reserve
from tests.support.pg import one, scalar
from tests.support.usage import add_event, rollup


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def lifecycle(conn, at: dt.datetime | None = None) -> dict:
    if at is None:
        return conn.execute("select public.usage_lifecycle()").fetchone()[0]
    return conn.execute("select public.usage_lifecycle(at := %s)", (at,)).fetchone()[0]


def set_period(conn, org, start: dt.datetime, end: dt.datetime) -> None:
    conn.execute("update public.credit_accounts set period_start = %s, period_end = %s where org_id = %s",
                 (start, end, org))


def period(conn, org) -> tuple[dt.datetime, dt.datetime]:
    row = one(conn, "select period_start, period_end from public.credit_accounts where org_id = %s", (org,))
    return row["period_start"], row["period_end"]


def plan_grant(conn, org, start: dt.datetime) -> dict | None:
    return one(conn, "select * from public.credit_grants where org_id = %s and kind = 'plan' "
                     "and external_id = 'plan:' || %s || ':free:' || %s", (org, org, int(start.timestamp())))


@pytest.mark.parametrize(("end", "at", "want"), [
    # a calendar month ends at midnight UTC on the 1st, not a second earlier
    ("2028-02-01", "2028-02-01 00:00:00", ("2028-02-01", "2028-03-01")),  # 29-day leap February
    ("2027-02-01", "2027-02-01 00:00:00", ("2027-02-01", "2027-03-01")),  # 28-day February
    ("2028-02-29", "2028-02-29 08:00:00", ("2028-02-29", "2028-03-01")),  # Jan 31 + 1 month in a leap year
    ("2027-02-28", "2027-02-28 08:00:00", ("2027-02-28", "2027-03-01")),  # Jan 31 + 1 month otherwise
    ("2028-03-31", "2028-03-31 00:00:01", ("2028-03-31", "2028-04-01")),  # a period that ended on the 31st
    ("2028-01-01", "2028-04-15 10:00:00", ("2028-04-01", "2028-05-01")),  # missed months: one period, this one
])
def test_free_periods_start_exactly_at_the_boundary(conn, cast, end, at, want):
    # the free allowance is a person's, held by their personal organization (tenancy rule)
    end_at = ts(end)
    set_period(conn, cast.personal, end_at - dt.timedelta(days=20), end_at)
    assert lifecycle(conn, end_at - dt.timedelta(seconds=1))["periods_started"] >= 0
    assert period(conn, cast.personal)[1] == end_at, "a second before the end nothing moves"
    assert lifecycle(conn, ts(at))["periods_started"] >= 1
    start, stop = ts(want[0]), ts(want[1])
    assert period(conn, cast.personal) == (start, stop)
    grant = plan_grant(conn, cast.personal, start)
    assert grant is not None and grant["expires_at"] == stop and grant["remaining"] == grant["amount"]
    assert scalar(conn, "select count(*) from public.credit_grants where org_id = %s and kind = 'plan' "
                        "and expired_at is null", (cast.personal,)) == 1, "the previous allowance expired"
    again = lifecycle(conn, ts(at))
    assert period(conn, cast.personal) == (start, stop) and plan_grant(conn, cast.personal, start)["id"] == grant["id"]
    assert again["periods_started"] == 0 or period(conn, cast.personal) == (start, stop)
    assert_consistent(conn, cast.personal)


def test_leap_year_month_arithmetic_is_postgres_clamping(conn):
    assert scalar(conn, "select ((timestamp '2028-01-31' + interval '1 month'))::date") == dt.date(2028, 2, 29)
    assert scalar(conn, "select ((timestamp '2027-01-31' + interval '1 month'))::date") == dt.date(2027, 2, 28)


def test_an_org_a_stripe_subscription_drives_is_left_alone(conn, cast):
    end = ts("2028-02-01")
    set_period(conn, cast.team, ts("2028-01-01"), end)
    conn.execute("insert into public.subscriptions (id, org_id, customer_id, status, synced_at, stripe_data) "
                 "values ('sub_lifecycle', %s, 'cus_lifecycle', 'active', now(), '{}')", (cast.team,))
    lifecycle(conn, ts("2028-02-01 00:00:00"))
    assert period(conn, cast.team)[1] == end


def test_stale_reservations_are_released_and_expired_grants_become_ledger_rows(conn, cast):
    reserve(conn, cast.team, "lifecycle-stale", 10, ttl_seconds=1)
    conn.execute("update public.credit_reservations set expires_at = now() - interval '1 minute' "
                 "where request_id = 'lifecycle-stale'")
    gid = add_grant(conn, cast.team, 500, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    conn.execute("update public.credit_grants set expires_at = now() - interval '1 second' where id = %s", (gid,))
    rows_before = len(ledger(conn, cast.team))
    steps = lifecycle(conn)
    assert steps["released_reservations"] >= 1 and steps["expired_grants"] >= 1
    assert scalar(conn, "select status from public.credit_reservations where request_id = 'lifecycle-stale'") \
        == "released"
    expiry = [e for e in ledger(conn, cast.team) if e["kind"] == "expiry" and e["grant_id"] == gid]
    assert expiry and expiry[0]["amount"] == -500, "the expired credits left through the ledger"
    assert len(ledger(conn, cast.team)) > rows_before
    assert scalar(conn, "select count(*) from public.credit_grants where id = %s", (gid,)) == 1, "never deleted"
    assert_consistent(conn, cast.team)


def test_api_requests_past_retention_are_deleted(conn, cast):
    now = dt.datetime.now(dt.UTC)
    for days, rid in ((31, "old"), (29, "recent")):
        conn.execute("insert into public.api_requests (org_id, request_id, endpoint, method, status_code, created_at) "
                     "values (%s, %s, '/v1/chat/completions', 'POST', 200, %s)",
                     (cast.team, f"retention-{rid}", now - dt.timedelta(days=days)))
    assert lifecycle(conn, now)["api_requests_deleted"] >= 1
    left = {r[0] for r in conn.execute("select request_id from public.api_requests "
                                       "where request_id like 'retention-%'").fetchall()}
    assert left == {"retention-recent"}
    conn.execute("update private.app_settings set value = '7' where key = 'api_requests_retention_days'")
    lifecycle(conn, now + dt.timedelta(days=23))
    assert scalar(conn, "select count(*) from public.api_requests where request_id like 'retention-%'") == 0


def test_partitions_ahead_exist(conn):
    steps = lifecycle(conn)
    month = scalar(conn, "select date_trunc('month', now())::date")
    names = set(steps["partitions_ahead"])
    for _ in range(4):
        assert f"usage_events_{month:%Y_%m}" in names
        month = (month + dt.timedelta(days=32)).replace(day=1)


def test_old_partitions_are_dropped_only_once_rolled_up(committed):
    with psycopg.connect(committed.dsn, autocommit=True) as c:
        c.execute("select private.create_usage_partition('2024-01-01')")
        add_event(c, committed.org, at=ts("2024-01-15 12:00:00"), credits=77)
        steps = lifecycle(c)
        assert steps["partitions_kept_not_rolled_up"] == ["usage_events_2024_01"]
        assert scalar(c, "select to_regclass('private.usage_events_2024_01')") is not None
        rollup(c)
        steps = lifecycle(c)
        assert steps["partitions_dropped"] == ["usage_events_2024_01"]
        assert scalar(c, "select to_regclass('private.usage_events_2024_01')") is None
        assert scalar(c, "select sum(credits) from public.usage_daily where day = '2024-01-15'") == 77, \
            "the rollup outlives the raw events"


def test_two_lifecycle_runs_at_once_one_skips(committed):
    with psycopg.connect(committed.dsn) as first, psycopg.connect(committed.dsn, autocommit=True) as second:
        assert lifecycle(first)["skipped"] is False
        assert lifecycle(second) == {"skipped": True, "reason": "another lifecycle run is running"}
        first.rollback()
