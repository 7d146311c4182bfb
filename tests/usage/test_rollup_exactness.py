"""usage_daily counts every event exactly once under every interleaving the issue names:
an event committed after a run's snapshot, two runs at once, an interrupted run, a late
event for a past day, and a rebuild equals the incremental result."""
from __future__ import annotations

import datetime as dt
import random
import threading

import psycopg
import pytest

from tests.support.pg import raises_sqlstate, scalar
from tests.support.usage import add_event, rolled, rollup, truth

UTC = dt.UTC


def connect(dsn: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=autocommit)


def test_an_event_committed_after_the_runs_snapshot_is_counted_by_the_next_run(committed):
    with connect(committed.dsn) as c, connect(committed.dsn, autocommit=False) as slow:
        # `slow` gets its transaction id first, then a later transaction commits
        add_event(slow, committed.org, credits=7)
        add_event(c, committed.org, credits=3)
        first = rollup(c)
        assert first["events"] == 1, "only the committed event is counted"
        assert rolled(c) == truth(c)
        slow.commit()
        # a bare id/timestamp watermark would now be past the slow event and lose it
        second = rollup(c)
        assert second["events"] == 1
        assert rolled(c) == truth(c)
        assert scalar(c, "select sum(credits) from public.usage_daily") == 10
        assert rollup(c)["events"] == 0, "a run with nothing new adds nothing"
        assert rolled(c) == truth(c)


def test_an_event_inserted_in_a_savepoint_is_counted_once(committed):
    with connect(committed.dsn) as c, connect(committed.dsn, autocommit=False) as slow:
        slow.execute("savepoint s")
        add_event(slow, committed.org, credits=4)
        slow.execute("release savepoint s")
        rollup(c)
        slow.commit()
        rollup(c)
        rollup(c)
        assert rolled(c) == truth(c) and scalar(c, "select sum(credits) from public.usage_daily") == 4


def test_two_runs_at_once_one_skips_and_a_waiting_one_never_double_counts(committed):
    with connect(committed.dsn) as c, connect(committed.dsn, autocommit=False) as first:
        for _ in range(5):
            add_event(c, committed.org)
        assert rollup(first)["events"] == 5  # holds the lock until it commits
        assert rollup(c) == {"skipped": True, "reason": "another rollup is running"}
        add_event(c, committed.org)
        waited: dict = {}
        t = threading.Thread(target=lambda: waited.update(rollup(connect(committed.dsn), wait=True)))
        t.start()
        t.join(0.5)
        assert t.is_alive(), "the waiting run waits for the first"
        first.commit()
        t.join(10)
        assert waited["events"] == 1, "the waiting run counts only what the first did not"
        assert rolled(c) == truth(c)


@pytest.mark.parametrize("how", ["rollback", "terminated"])
def test_an_interrupted_run_changes_nothing_and_the_next_run_is_exact(committed, how):
    with connect(committed.dsn) as c:
        for i in range(4):
            add_event(c, committed.org, credits=i + 1)
        rollup(c)
        add_event(c, committed.org, credits=100)
        before = rolled(c)
        run = connect(committed.dsn, autocommit=False)
        assert rollup(run)["events"] == 1
        if how == "rollback":
            run.rollback()
            run.close()
        else:
            c.execute("select pg_terminate_backend(%s)", (run.info.backend_pid,))
            with pytest.raises(psycopg.OperationalError):
                run.execute("select 1")
            run.close()
        assert rolled(c) == before, "the interrupted run left no trace"
        assert rollup(c)["events"] == 1
        assert rolled(c) == truth(c)


def test_a_late_event_for_a_past_day_is_added_to_that_day(committed):
    with connect(committed.dsn) as c:
        now = dt.datetime.now(UTC)
        add_event(c, committed.org, at=now - dt.timedelta(days=3), credits=2)
        rollup(c)
        late_day = now - dt.timedelta(days=10)
        add_event(c, committed.org, at=late_day, credits=9)
        add_event(c, committed.org, at=now - dt.timedelta(days=3), credits=1)
        assert rollup(c)["events"] == 2
        assert rolled(c) == truth(c)
        day_credits = scalar(c, "select sum(credits) from public.usage_daily where day = %s", (late_day.date(),))
        assert day_credits == 9


def test_rebuild_equals_incremental_after_random_interleavings(committed):
    rng = random.Random(9)
    now = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    models = ["gpt-4o-mini", "gpt-4o", None]
    with connect(committed.dsn) as c:
        open_tx: list[psycopg.Connection] = []
        for step in range(60):
            roll = rng.random()
            target = c
            if roll < 0.25:
                target = connect(committed.dsn, autocommit=False)
                open_tx.append(target)
            elif roll < 0.4 and open_tx:
                tx = open_tx.pop(rng.randrange(len(open_tx)))
                (tx.commit if rng.random() < 0.8 else tx.rollback)()
                tx.close()
                continue
            elif roll < 0.55:
                rollup(c)
                continue
            add_event(target, rng.choice([committed.org, committed.other]),
                      at=now - dt.timedelta(hours=rng.randrange(0, 24 * 20)), model=rng.choice(models),
                      status=rng.choice(["succeeded", "succeeded", "upstream_error"]),
                      credits=rng.randrange(0, 50), prompt=rng.randrange(0, 1000), cost=f"0.{rng.randrange(10**9):09d}")
        for tx in open_tx:
            tx.commit()
            tx.close()
        rollup(c)
        incremental = rolled(c)
        assert incremental == truth(c), "incremental runs are exact"
        first_day = (now - dt.timedelta(days=21)).date()
        result = c.execute("select public.usage_rollup_rebuild(%s, %s)", (first_day, now.date())).fetchone()[0]
        assert result["events"] == scalar(c, "select count(*) from public.usage_events")
        assert rolled(c) == incremental, "a rebuild gives the same numbers"
        assert rollup(c)["events"] == 0 and rolled(c) == incremental


def test_a_rebuild_while_events_are_in_flight_stays_exact(committed):
    with connect(committed.dsn) as c, connect(committed.dsn, autocommit=False) as slow:
        add_event(c, committed.org, credits=1)
        add_event(slow, committed.org, credits=2)
        today = dt.datetime.now(UTC).date()
        c.execute("select public.usage_rollup_rebuild(%s, %s)", (today, today))
        assert rolled(c) == truth(c)
        slow.commit()
        rollup(c)
        assert rolled(c) == truth(c)


def test_rebuild_refuses_a_bad_range_and_days_past_raw_retention(committed):
    with connect(committed.dsn) as c:
        with raises_sqlstate("PT400", "from_day <= to_day"):
            c.execute("select public.usage_rollup_rebuild('2026-02-01', '2026-01-01')")
        with raises_sqlstate("PT400", "past retention"):
            c.execute("select public.usage_rollup_rebuild('2020-01-01', '2020-01-31')")
