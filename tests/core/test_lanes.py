"""lib.core.lanes: one batch in flight per key; what arrives meanwhile goes next,
together, each caller answered its own part (with a real database: test_async_pool)."""
from __future__ import annotations

import asyncio

import pytest

from lib.core import lanes
from lib.core.lanes import Lanes


class Sender:
    """Records each batch; each waits for `release` (set by the test) before answering
    every item doubled, or raising when an item is 'boom'."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        await self.release.wait()
        if "boom" in items:
            raise RuntimeError("the batch failed")
        return [item * 2 for item in items]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(coro)


async def _held(first: list[str], stalled=None) -> tuple[Sender, Lanes, asyncio.Task]:
    """A lane whose key "org" has the batch `first` sent and held in flight (until the
    test sets `send.release`)."""
    send = Sender()
    lane = Lanes(send) if stalled is None else Lanes(send, stalled=stalled)
    send.release.clear()
    task = asyncio.create_task(lane.run("org", first))
    await _settle()
    return send, lane, task


def _queue(lane: Lanes, *calls: list[str]) -> list[asyncio.Task]:
    return [asyncio.create_task(lane.run("org", items)) for items in calls]


def test_a_free_lane_sends_at_once_and_the_calls_queued_meanwhile_go_together_in_order():
    async def go():
        send, lane, first = await _held(["a"])
        assert send.batches == [["a"]], "nothing in flight: sent without waiting"
        queued = _queue(lane, ["b", "c"], ["d"], ["e"])
        await _settle()
        assert send.batches == [["a"]], "queued behind the batch in flight"
        send.release.set()
        answers = await asyncio.gather(first, *queued)
        return send.batches, answers

    batches, answers = run(go())
    assert batches == [["a"], ["b", "c", "d", "e"]]
    assert answers == [["aa"], ["bb", "cc"], ["dd"], ["ee"]], "each caller gets its own part"


def test_keys_do_not_wait_for_each_other():
    async def go():
        slow, fast = Sender(), Sender()
        slow.release.clear()
        lane = Lanes(lambda items: (slow if items[0].startswith("s") else fast)(items))
        stuck = asyncio.create_task(lane.run("stalled-org", ["s1"]))
        await _settle()
        other = await asyncio.wait_for(lane.run("other-org", ["f1"]), 1)
        slow.release.set()
        return other, await stuck

    assert run(go()) == (["f1f1"], ["s1s1"])


def test_a_failed_batch_fails_each_of_its_callers_and_the_lane_goes_on():
    async def go():
        send, lane, first = await _held(["a"])
        doomed = _queue(lane, ["boom"], ["b"])
        await _settle()
        send.release.set()
        assert await first == ["aa"]
        outcomes = await asyncio.gather(*doomed, return_exceptions=True)
        after = await lane.run("org", ["c"])
        return outcomes, after, send.batches

    outcomes, after, batches = run(go())
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    assert after == ["cc"] and batches == [["a"], ["boom", "b"], ["c"]]


def test_a_caller_cancelled_while_queued_is_left_out_of_the_batch():
    async def go():
        send, lane, first = await _held(["a"])
        gone, kept = _queue(lane, ["gone"], ["b"])
        await _settle()
        gone.cancel()
        await _settle()
        send.release.set()
        return await first, await kept, send.batches

    assert run(go()) == (["aa"], ["bb"], [["a"], ["b"]])


def test_a_batch_holds_at_most_max_batch_calls():
    async def go():
        send, lane, first = await _held(["x"])
        queued = _queue(lane, *([f"q{i}"] for i in range(lanes.MAX_BATCH + 3)))
        await _settle()
        send.release.set()
        await asyncio.gather(first, *queued)
        return [len(b) for b in send.batches]

    assert run(go()) == [1, lanes.MAX_BATCH, 3]


def test_a_stalled_batch_opens_the_lane_so_the_next_calls_go_side_by_side():
    async def go():
        send, lane, first = await _held(["locked"], stalled=lambda answers: "lockedlocked" in answers)
        queued = _queue(lane, *([f"q{i}"] for i in range(3)))
        await _settle()
        send.release.set()
        await asyncio.gather(first, *queued)
        open_batches = list(send.batches)
        send.batches.clear()
        send.release.clear()
        side = _queue(lane, ["s0"], ["s1"])
        await _settle()
        in_flight_together = len(send.batches)
        send.release.set()
        await asyncio.gather(*side)
        return open_batches, in_flight_together

    open_batches, in_flight_together = run(go())
    assert open_batches == [["locked"], ["q0"], ["q1"], ["q2"]], "the open lane sent each queued call on its own"
    assert in_flight_together == 2, "while open, calls do not wait for each other"


def test_an_open_lane_closes_again_after_open_seconds(monkeypatch):
    monkeypatch.setattr(lanes, "OPEN_SECONDS", 0.0)

    async def go():
        send = Sender()
        lane = Lanes(send, stalled=lambda answers: "lockedlocked" in answers)
        await lane.run("org", ["locked"])
        send.release.clear()
        first = asyncio.create_task(lane.run("org", ["a"]))
        second = asyncio.create_task(lane.run("org", ["b"]))
        await _settle()
        in_flight = list(send.batches[1:])
        send.release.set()
        await asyncio.gather(first, second)
        return in_flight

    assert run(go()) == [["a"]], "closed again: the second call waits for the first"


@pytest.mark.parametrize("key", ["org", ("caller", b"hash")])
def test_any_hashable_is_a_key(key):
    async def go():
        return await Lanes(Sender()).run(key, ["k"])

    assert run(go()) == ["kk"]


# with a real database: lib.core.db_async's pool sends a lane's batch in one round trip

WHO = """
create function public.lane_probe(n integer) returns jsonb language sql as $$
  select jsonb_build_object('n', n, 'pid', pg_backend_pid(), 'xid', pg_current_xact_id()::text)
$$;
create table public.lane_lock (id integer primary key);
create function public.lane_locked() returns void language plpgsql as $$
begin
  perform set_config('lock_timeout', '50ms', true);
  lock table public.lane_lock in access exclusive mode;
end $$;
"""


async def _create(dsn: str, sql: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql)


def test_calls_queued_in_a_lane_ride_one_connection_each_in_its_own_transaction(fresh_dsn):
    from lib.core.db_async import AsyncPsycopgDatabase

    async def go():
        await _create(fresh_dsn, WHO)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=8)
        try:
            answers = await asyncio.gather(*(db.rpc_pipeline([("lane_probe", {"n": i})], lane="org")
                                             for i in range(6)))
            return [a[0] for a in answers], db.pool._size
        finally:
            await db.close()

    answers, size = run(go())
    assert [a["n"] for a in answers] == list(range(6)), "each caller its own answer"
    assert size <= 2, f"the first call, then one batch for the other five: {size} connections"
    assert len({a["pid"] for a in answers[1:]}) == 1, "the batch went over one connection"
    assert len({a["xid"] for a in answers}) == 6, "each call its own transaction"


def test_an_error_in_a_batch_is_only_its_own_caller_s(fresh_dsn):
    from lib.core.db_async import AsyncPsycopgDatabase
    from lib.core.errors import TollboothError

    async def go():
        await _create(fresh_dsn, WHO)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=8)
        try:
            return await asyncio.gather(
                db.rpc_pipeline([("lane_probe", {"n": 0})], lane="org"),
                db.rpc_pipeline([("renew_chat_leases", {"request_ids": {"not": "an array"}})], lane="org"),
                db.rpc_pipeline([("lane_probe", {"n": 2}), ("lane_probe", {"n": 3})], lane="org"),
                return_exceptions=True)
        finally:
            await db.close()

    first, bad, last = run(go())
    assert first[0]["n"] == 0 and [a["n"] for a in last] == [2, 3]
    assert isinstance(bad, TollboothError) and bad.status == 400, bad


def test_a_lock_timeout_in_a_lane_opens_it(fresh_dsn):
    import psycopg

    from lib.core.db_async import AsyncPsycopgDatabase
    from lib.core.errors import TollboothError

    async def go():
        await _create(fresh_dsn, WHO)
        db = AsyncPsycopgDatabase(fresh_dsn, pool_size=8)
        holder = await psycopg.AsyncConnection.connect(fresh_dsn)
        try:
            await holder.execute("lock table public.lane_lock in access exclusive mode")
            outcomes = await asyncio.gather(*(db.rpc_pipeline([("lane_locked", {})], lane="org") for _ in range(3)),
                                            return_exceptions=True)
            return outcomes, db.lanes._is_open("org"), db.lanes._is_open("other")
        finally:
            await holder.rollback()
            await holder.close()
            await db.close()

    outcomes, opened, other = run(go())
    assert all(isinstance(o, TollboothError) and o.status == 503 for o in outcomes), outcomes
    assert opened and not other, "the stalled organization's lane is open; no one else's"
