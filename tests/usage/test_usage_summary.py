"""usage_summary: usage_daily plus the events not yet rolled up, each counted once, in
the viewer's timezone; arguments checked; breakdowns by model, API key and project."""
from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from tests.support.pg import as_user, raises_sqlstate, scalar
from tests.support.usage import add_event, rollup

UTC = dt.UTC


def summary(conn, org, user=None, **kw) -> dict:
    """usage_summary_for_user for `user` (named arguments), or the bare summary as the service sees it."""
    if user is None:
        return conn.execute("select private.usage_summary_json(%s, 30, 'UTC', 'day')", (org,)).fetchone()[0]
    named = "".join(f", {k} := %({k})s" for k in kw)
    return conn.execute(f"select public.usage_summary_for_user(user_id := %(user)s, org_id := %(org)s{named})",
                        {"org": org, "user": user, **kw}).fetchone()[0]


def raw_credits(conn, org, days: int = 30) -> int:
    return int(scalar(conn, "select coalesce(sum(credits), 0) from public.usage_events where org_id = %s "
                            "and created_at >= date_trunc('day', now(), 'UTC') - make_interval(days => %s - 1)",
                      (org, days)))


def test_todays_unrolled_events_are_counted_exactly_once_whenever_the_job_ran(committed):
    now = dt.datetime.now(UTC)
    with psycopg.connect(committed.dsn, autocommit=True) as c, \
            psycopg.connect(committed.dsn) as slow:
        for d in range(5):
            add_event(c, committed.org, at=now - dt.timedelta(days=d), credits=10 + d)
        check = lambda: summary(c, committed.org)["totals"]["credits"] == raw_credits(c, committed.org)  # noqa: E731
        assert check(), "nothing rolled up yet: all from the raw events"
        rollup(c)
        assert check(), "everything rolled up: all from usage_daily"
        add_event(c, committed.org, credits=7)  # today, not rolled
        add_event(slow, committed.org, credits=1000)  # in flight: invisible to everyone
        assert check()
        rollup(c)
        slow.commit()  # committed after the run's snapshot: unrolled but visible
        assert check()
        add_event(c, committed.org, at=now - dt.timedelta(days=4), credits=3)  # late, for a past day
        assert check()
        rollup(c)
        assert check()
        assert summary(c, committed.org)["totals"]["credits"] == 10 + 11 + 12 + 13 + 14 + 7 + 1000 + 3


def test_buckets_follow_the_viewers_timezone(conn, cast):
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    at = today - dt.timedelta(days=2) + dt.timedelta(hours=3, minutes=30)  # 03:30 UTC
    add_event(conn, cast.team, at=at, credits=5)
    rollup(conn)
    add_event(conn, cast.team, at=at + dt.timedelta(minutes=10), credits=2)  # unrolled, same hour
    args = {"user": cast.member.id, "days": 7, "group_by": "day"}
    by_day = lambda tz: {b["bucket"]: b["credits"] for b in summary(conn, cast.team, tz=tz, **args)["buckets"]}  # noqa: E731
    assert by_day("UTC")[at.date().isoformat()] == 7
    ny = by_day("America/New_York")  # UTC-5 or -4: still the previous local day
    assert ny[(at - dt.timedelta(days=1)).date().isoformat()] == 7
    assert sum(ny.values()) == 7
    tokyo = by_day("Asia/Tokyo")  # UTC+9: 12:30 the same day
    assert tokyo[at.date().isoformat()] == 7
    assert len(by_day("UTC")) == 7, "every day of the window has a bucket, empty ones too"
    hours = summary(conn, cast.team, tz="Asia/Tokyo", user=cast.member.id, days=7, group_by="hour")["buckets"]
    assert [b["credits"] for b in hours if b["credits"]] == [7]
    assert [b["bucket"] for b in hours if b["credits"]] == [f"{at.date().isoformat()}T12:00"]
    assert len(hours) == 7 * 24


def test_breakdowns_by_model_key_and_project(conn, cast):
    from tests.support.metering import create_key
    key = create_key(conn, cast.owner, cast.team, name="breakdown key", project_id=cast.project)
    add_event(conn, cast.team, model="gpt-4o", credits=30, api_key_id=key["id"], project_id=cast.project)
    rollup(conn)
    add_event(conn, cast.team, model="gpt-4o-mini", credits=5, status="upstream_error")
    s = summary(conn, cast.team, user=cast.member.id, days=1)
    assert [(m["model"], m["credits"]) for m in s["by_model"]] == [("gpt-4o", 30), ("gpt-4o-mini", 5)]
    keys = {k["name"]: k["credits"] for k in s["by_api_key"]}
    assert keys == {"breakdown key": 30, None: 5}
    assert {p["name"]: p["credits"] for p in s["by_project"]} == {"Team project": 30, None: 5}
    assert s["totals"]["requests"] == 2 and s["totals"]["failed_requests"] == 1 and s["totals"]["ok_requests"] == 1
    assert s["totals"]["cost_usd"] == "0.000246", "cost is an exact decimal string"


@pytest.mark.parametrize(("args", "message"), [
    ({"tz": "Mars/Olympus"}, "unknown time zone"),
    ({"group_by": "week"}, "group_by must be"),
    ({"days": 0}, "days must be"),
    ({"days": 401}, "days must be"),
])
def test_bad_arguments_are_400(conn, cast, args, message):
    with raises_sqlstate("PT400", message):
        with conn.transaction():
            summary(conn, cast.team, user=cast.member.id, **args)


def test_usage_summary_through_postgrest_with_named_arguments(conn, cast):
    add_event(conn, cast.team, credits=4)
    row = as_user(conn, cast.member).one(
        "select public.usage_summary(org_id := %s, days := 7, tz := 'Europe/Paris', group_by := 'day') as s",
        (cast.team,))
    assert row["s"]["totals"]["credits"] == 4 and row["s"]["tz"] == "Europe/Paris"
    default = as_user(conn, cast.member).one("select public.usage_summary(org_id := %s) as s", (cast.team,))
    assert default["s"]["days"] == 30 and len(default["s"]["buckets"]) == 30
