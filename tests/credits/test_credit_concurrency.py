"""The credit functions under real concurrency: committed transactions from many threads,
each on its own connection, against a database cloned for the test (`fresh_dsn`).

The functions lock the organization's credit_accounts row before anything else, so
they serialize per organization: the balance never goes below zero, every request is
charged once, and nothing deadlocks (two overlapping runs of the stale job, which lock
many organizations, take an advisory lock and run one after the other)."""
from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.support.credits import (
    assert_consistent,
    assert_grants_cover,
    balance,
    ledger,
    month_bounds,
    reserved,
    set_balance,
)
from tests.support.personas import make_user, personal_org
from tests.support.pg import rows, scalar

JOIN_TIMEOUT = 120


@dataclass
class Outcome:
    value: Any = None
    error: psycopg.Error | None = None

    @property
    def sqlstate(self) -> str | None:
        return self.error.sqlstate if self.error else None


def connect(dsn: str, role: str | None = "service_role") -> psycopg.Connection:
    c = psycopg.connect(dsn, autocommit=True)
    c.execute("set statement_timeout = '60s'")
    if role:
        c.execute(f"set role {role}")
    return c


def concurrently(dsn: str, jobs: list[Callable[[psycopg.Connection], Any]], threads: int | None = None,
                 role: str | None = "service_role", watch: Callable[[], None] | None = None) -> list[Outcome]:
    """Run every job once, `threads` at a time, each thread on its own connection; all
    threads start together. Returns each job's Outcome in job order. `watch`, if given,
    is called in a loop on the main thread while the jobs run."""
    threads = min(threads or len(jobs), len(jobs))
    todo: queue.Queue = queue.Queue()
    for item in enumerate(jobs):
        todo.put(item)
    results: list[Outcome | None] = [None] * len(jobs)
    barrier = threading.Barrier(threads)
    crashed: list[BaseException] = []

    def worker():
        try:
            with connect(dsn, role) as c:
                barrier.wait(timeout=60)
                while True:
                    try:
                        i, job = todo.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        results[i] = Outcome(value=job(c))
                    except psycopg.Error as exc:
                        results[i] = Outcome(error=exc)
        except BaseException as exc:
            crashed.append(exc)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for th in pool:
        th.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    while any(th.is_alive() for th in pool) and time.monotonic() < deadline:
        if watch:
            watch()
        else:
            time.sleep(0.01)
    for th in pool:
        th.join(max(0.0, deadline - time.monotonic()))
    assert not any(th.is_alive() for th in pool), f"every worker finished within {JOIN_TIMEOUT}s (no hang)"
    assert not crashed, f"no worker crashed outside its jobs: {crashed}"
    assert all(r is not None for r in results), "every job ran"
    return results  # type: ignore[return-value]


def reserve_job(org, request_id: str, amount: int):
    def job(c):
        return c.execute("select public.reserve_credits(org_id := %s, request_id := %s, amount := %s)",
                         (org, request_id, amount)).fetchone()[0]
    return job


def settle_job(request_id: str, charge: int):
    def job(c):
        return c.execute("select public.settle_credits(request_id := %s, charge := %s)",
                         (request_id, charge)).fetchone()[0]
    return job


def release_job(request_id: str):
    def job(c):
        return c.execute("select public.release_credits(request_id := %s, reason := 'race')",
                         (request_id,)).fetchone()[0]
    return job


@pytest.fixture
def sql(fresh_dsn):
    """A superuser connection (autocommit) to the test's own database."""
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        yield c


def org_with_balance(sql, credits: int, name: str = "racer"):
    org = personal_org(sql, make_user(sql, name))
    set_balance(sql, org, credits)
    assert_consistent(sql, org)
    return org


def race_fifty_reservations(dsn, sql, org) -> list[str]:
    """50 threads each reserve 3 credits of 100 at once; returns the request ids that got them."""
    ids = [f"race-{i:02d}" for i in range(50)]
    lowest = [balance(sql, org)]

    def watch():
        lowest[0] = min(lowest[0], balance(sql, org))

    results = concurrently(dsn, [reserve_job(org, rid, 3) for rid in ids], watch=watch)
    won = [rid for rid, r in zip(ids, results) if r.error is None]
    refused = Counter(r.sqlstate for r in results if r.error is not None)
    assert len(won) == 33, f"exactly 33 reservations of 3 fit in 100 credits, got {len(won)} ({refused})"
    assert refused == {"PT402": 17}, f"the other 17 are refused with PT402 and nothing else: {refused}"
    remaining = sorted(r.value["remaining"] for r in results if r.error is None)
    assert remaining == list(range(1, 100, 3)), \
        f"each winner saw a different balance, 97 down to 1 (serialized): {remaining}"
    assert lowest[0] >= 0, f"the balance was never seen below zero (lowest {lowest[0]})"
    assert (balance(sql, org), reserved(sql, org)) == (1, 99), "1 credit left, 99 held"
    holds = Counter(e["request_id"] for e in ledger(sql, org) if e["kind"] == "reservation")
    assert set(holds) == set(won) and set(holds.values()) == {1}, "one reservation ledger row per winner, no loser"
    assert_consistent(sql, org)
    return won


def test_fifty_concurrent_reservations_never_overdraw(fresh_dsn, sql):
    org = org_with_balance(sql, 100)
    race_fifty_reservations(fresh_dsn, sql, org)


def test_concurrent_settles_releases_and_replays_charge_once(fresh_dsn, sql):
    org = org_with_balance(sql, 100)
    won = race_fifty_reservations(fresh_dsn, sql, org)
    settled, released = won[:17], won[17:]
    jobs, owner = [], []
    for rid in settled:
        for _ in range(3):  # the same settle three times at once
            jobs.append(settle_job(rid, 2))
            owner.append(rid)
    for rid in released:
        for _ in range(2):
            jobs.append(release_job(rid))
            owner.append(rid)
    order = list(range(len(jobs)))
    random.Random(7).shuffle(order)
    results = concurrently(fresh_dsn, [jobs[i] for i in order], threads=20)
    by_request: dict[str, list[Outcome]] = defaultdict(list)
    for i, r in zip(order, results):
        by_request[owner[i]].append(r)

    errors = [(rid, r.error) for rid, rs in by_request.items() for r in rs if r.error]
    assert errors == [], f"no settle or release failed: {errors}"
    for rid in settled:
        firsts = [r.value for r in by_request[rid] if not r.value["replayed"]]
        assert len(firsts) == 1, f"{rid}: exactly one of the three settles did the work, got {firsts}"
        assert all(r.value["charged"] == 2 for r in by_request[rid]), f"{rid}: every settle reports the one charge"
    for rid in released:
        firsts = [r.value for r in by_request[rid] if not r.value["replayed"]]
        assert len(firsts) == 1, f"{rid}: exactly one of the two releases did the work"

    closing = Counter((e["request_id"], e["kind"]) for e in ledger(sql, org) if e["kind"] in ("settlement", "release"))
    assert closing == Counter({**{(rid, "settlement"): 1 for rid in settled},
                               **{(rid, "release"): 1 for rid in released}}), \
        f"one closing ledger row per request: {closing}"
    statuses = {r["request_id"]: (r["status"], r["charged"])
                for r in rows(sql, "select request_id, status, charged from public.credit_reservations "
                                   "where org_id = %s", (org,))}
    assert statuses == {**{rid: ("settled", 2) for rid in settled}, **{rid: ("released", 0) for rid in released}}, \
        "every reservation closed once, as asked"
    assert (balance(sql, org), reserved(sql, org)) == (100 - 2 * 17, 0), "100 minus 17 charges of 2, nothing held"
    assert_consistent(sql, org)
    assert_grants_cover(sql, org)


def test_settle_and_release_racing_for_the_same_request_close_it_once(fresh_dsn, sql):
    org = org_with_balance(sql, 100)
    ids = [f"contest-{i:02d}" for i in range(20)]
    for rid in ids:
        sql.execute("select public.reserve_credits(org_id := %s, request_id := %s, amount := 4)", (org, rid))
    jobs, owner = [], []
    for rid in ids:
        for job in (settle_job(rid, 1), settle_job(rid, 3), release_job(rid)):
            jobs.append(job)
            owner.append(rid)
    order = list(range(len(jobs)))
    random.Random(11).shuffle(order)
    results = concurrently(fresh_dsn, [jobs[i] for i in order], threads=24)
    by_request: dict[str, list[Outcome]] = defaultdict(list)
    for i, r in zip(order, results):
        by_request[owner[i]].append(r)

    total_charged = 0
    for rid in ids:
        outcomes = by_request[rid]
        assert all(r.error is None for r in outcomes), f"{rid}: no call failed: {[r.error for r in outcomes]}"
        winners = [r.value for r in outcomes if not r.value["replayed"]]
        assert len(winners) == 1, f"{rid}: exactly one call closed the reservation, got {winners}"
        row = rows(sql, "select status, charged from public.credit_reservations where request_id = %s", (rid,))[0]
        assert row["status"] == winners[0]["status"], f"{rid}: the recorded status is the winner's"
        for r in outcomes:
            if r.value["replayed"] and "charged" in r.value:
                assert r.value["charged"] == row["charged"], f"{rid}: a replayed settle reports the recorded charge"
        total_charged += row["charged"]
    assert (balance(sql, org), reserved(sql, org)) == (100 - total_charged, 0), "the balance paid each charge once"
    assert_consistent(sql, org)
    assert_grants_cover(sql, org)


def test_plan_periods_reservations_and_stale_jobs_never_deadlock(fresh_dsn, sql):
    """Every kind of credit movement at once on three organizations: reservations settled
    or released in the same or a later transaction, plan periods started and switched,
    ended periods rolled, grants added (some already expired), while the stale job (which
    touches every organization) runs over and over, one run at a time, as a cron would.
    The only acceptable error is PT402."""
    orgs = [org_with_balance(sql, 2000, f"busy-{i}") for i in range(3)]
    month_start, _ = month_bounds(sql)
    rng = random.Random(2026)
    jobs: list[Callable] = []
    counter = iter(range(10**6))

    def reserve_then_close(org, amount, ttl, charge, same_tx):
        rid = f"dl-{next(counter)}"

        def job(c):
            with c.transaction() if same_tx else nullcontext():
                c.execute("select public.reserve_credits(org_id := %s, request_id := %s, amount := %s, "
                          "ttl_seconds := %s)", (org, rid, amount, ttl))
                if charge is None:
                    c.execute("select public.release_credits(request_id := %s)", (rid,))
                else:
                    c.execute("select public.settle_credits(request_id := %s, charge := %s)", (rid, charge))
        return job

    def start_period(org, plan, shift_days):
        start = month_start + timedelta(days=shift_days)

        def job(c):
            c.execute("select private.start_plan_period(%s, %s, %s, %s)",
                      (org, plan, start, start + timedelta(days=30)))
        return job

    def roll_period(org):
        def job(c):
            with c.transaction():
                c.execute("update public.credit_accounts set period_end = now() - interval '1 second' "
                          "where org_id = %s", (org,))
                c.execute("select private.ensure_current_period(%s)", (org,))
        return job

    def add_grant(org, amount, expired):
        def job(c):
            c.execute("select private.grant_credits(%s, 'purchase', %s, now() + %s::interval)",
                      (org, amount, "-1 second" if expired else "10 days"))
        return job

    for _ in range(400):
        org = rng.choice(orgs)
        kind = rng.random()
        if kind < 0.55:
            jobs.append(reserve_then_close(org, rng.randint(1, 40), rng.choice([0, 900]),
                                           rng.choice([None, 0, 5, 30, 60]), rng.random() < 0.5))
        elif kind < 0.70:
            jobs.append(start_period(org, rng.choice(["free", "pro"]), rng.randint(-3, 3)))
        elif kind < 0.85:
            jobs.append(roll_period(org))
        else:
            jobs.append(add_grant(org, rng.randint(50, 300), rng.random() < 0.5))

    cron_errors: list[psycopg.Error] = []
    cron_runs = [0]
    with connect(fresh_dsn, role="service_role") as cron:
        def run_stale_job():
            try:
                cron.execute("select public.release_stale_reservations()")
                cron_runs[0] += 1
            except psycopg.Error as exc:
                cron_errors.append(exc)
            time.sleep(0.005)

        results = concurrently(fresh_dsn, jobs, threads=16, role=None, watch=run_stale_job)
    errors = [r.error for r in results if r.error is not None] + cron_errors
    deadlocks = [e for e in errors if isinstance(e, psycopg.errors.DeadlockDetected)]
    assert deadlocks == [], f"no deadlock between credit movements: {deadlocks[:3]}"
    unexpected = [e for e in errors if e.sqlstate != "PT402"]
    assert unexpected == [], f"no error but insufficient credits (PT402): {unexpected[:5]}"
    assert sum(r.error is None for r in results) > 300, "most of the work went through"
    assert cron_runs[0] > 0, "the stale job ran while the work went on"

    scalar(sql, "select public.release_stale_reservations()")
    for org in orgs:
        assert_consistent(sql, org)
    leftovers = rows(sql, "select request_id from public.credit_reservations where status = 'open' "
                          "and org_id = any(%s)", (orgs,))
    assert leftovers == [], f"every reservation was closed by its job or the stale job: {leftovers}"


def wait_until_blocked(sql, pid: int, thread: threading.Thread) -> None:
    """Until the backend `pid` waits for a lock, or its thread is done (a run that skips
    locked rows, say, never waits)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and thread.is_alive():
        if scalar(sql, "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", (pid,)):
            return
        time.sleep(0.01)
    assert not thread.is_alive(), "the run either waits for a lock or finishes within 10 s"


def test_overlapping_stale_jobs_do_not_deadlock(fresh_dsn, sql):
    """Deterministic interleaving of two runs of the stale job over orgs A, B, C:
    run 1 sees [stale hold on A, stale hold on C] and an expired grant on B; it releases A's
    hold, then waits for C (held by a third transaction). A stale hold on B is committed
    and run 2 starts: it sees [B's hold, A's hold], releases B's and waits for A (run 1).
    C is let go: run 1 goes on to expire B's grant and waits for B (run 2): a cycle."""
    a, b, c_org = (org_with_balance(sql, 1000, f"stale-{x}") for x in "abc")
    for org, rid, age in ((a, "st-a", "2 hours"), (c_org, "st-c", "1 hour")):
        sql.execute("select public.reserve_credits(org_id := %s, request_id := %s, amount := 10)", (org, rid))
        sql.execute("update public.credit_reservations set expires_at = now() - %s::interval where request_id = %s",
                    (age, rid))
    sql.execute("select private.grant_credits(%s, 'purchase', 100, now() - interval '1 second')", (b,))

    outcomes: dict[str, psycopg.Error | None] = {}
    pids: dict[str, int] = {}
    conns = {name: connect(fresh_dsn) for name in ("run1", "run2")}

    def run(name):
        try:
            conns[name].execute("select public.release_stale_reservations()")
            outcomes[name] = None
        except psycopg.Error as exc:
            outcomes[name] = exc

    try:
        for name, conn_ in conns.items():
            pids[name] = scalar(conn_, "select pg_backend_pid()")
        with psycopg.connect(fresh_dsn) as holder:  # a transaction holding C's account
            holder.execute("select 1 from public.credit_accounts where org_id = %s for update", (c_org,))
            run1 = threading.Thread(target=run, args=("run1",), daemon=True)
            run1.start()
            wait_until_blocked(sql, pids["run1"], run1)  # on C
            sql.execute("select public.reserve_credits(org_id := %s, request_id := 'st-b', amount := 10)", (b,))
            sql.execute("update public.credit_reservations set expires_at = now() - interval '3 hours' "
                        "where request_id = 'st-b'")
            run2 = threading.Thread(target=run, args=("run2",), daemon=True)
            run2.start()
            wait_until_blocked(sql, pids["run2"], run2)  # on A
            holder.rollback()
        run1.join(30)
        run2.join(30)
        assert not run1.is_alive() and not run2.is_alive(), "both runs finished"
    finally:
        for conn_ in conns.values():
            conn_.close()
    deadlocks = {name: e for name, e in outcomes.items() if isinstance(e, psycopg.errors.DeadlockDetected)}
    assert deadlocks == {}, f"overlapping stale jobs must not deadlock: {deadlocks}"
    assert outcomes == {"run1": None, "run2": None}, f"both runs succeed: {outcomes}"
    for org in (a, b, c_org):
        assert_consistent(sql, org)
