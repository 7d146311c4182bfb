"""lib.core.lanes: a lane's calls go out at once on its one channel, behind those in
flight, at most MAX_IN_FLIGHT of them; each caller is answered its own part; a broken
channel fails only what it carried; a stalled lane opens (with a real database:
test_lanes_db)."""
from __future__ import annotations

import asyncio
from collections import deque

import pytest

from lib.core import lanes
from lib.core.lanes import Lanes


class Channel:
    """A channel whose sends the test answers, in order (`answer`): every item doubled,
    or an error when an item is 'boom'."""

    def __init__(self) -> None:
        self.on_answered = None
        self.sent: list[list[str]] = []
        self.pending: deque[tuple[list[str], asyncio.Future[list[str]]]] = deque()
        self.broken = False
        self.released = False

    @property
    def in_flight(self) -> int:
        return sum(len(items) for items, _ in self.pending)

    def send(self, items: list[str]) -> asyncio.Future[list[str]]:
        assert not self.broken and not self.released, "nothing is sent on a broken or released channel"
        answered = asyncio.get_running_loop().create_future()
        self.sent.append(list(items))
        self.pending.append((list(items), answered))
        return answered

    def answer(self, count: int = 1) -> None:
        for _ in range(count):
            items, answered = self.pending.popleft()
            answers = [item * 2 for item in items]
            if not answered.done():
                if "boom" in items:
                    answered.set_exception(RuntimeError("the call failed"))
                else:
                    answered.set_result(answers)
            if self.on_answered is not None:
                self.on_answered(answers)

    def break_(self) -> None:
        self.broken = True
        pending, self.pending = self.pending, deque()
        for _, answered in pending:
            if not answered.done():
                answered.set_exception(ConnectionError("the channel broke"))
        if self.on_answered is not None:
            self.on_answered(None)

    def release(self) -> None:
        self.released = True


class Opener:
    """Opens a new Channel for each lane that needs one, once `gate` is set."""

    def __init__(self) -> None:
        self.channels: list[Channel] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self) -> Channel:
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.channels.append(channel := Channel())
        return channel


class Alone:
    """send_alone: records each call, answers it doubled once `release` is set."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[str]) -> list[str]:
        self.calls.append(list(items))
        await self.release.wait()
        return [item * 2 for item in items]


def _stalled(answers: list[str]) -> bool:
    return "lockedlocked" in answers


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(coro)


def _lanes() -> tuple[Opener, Alone, Lanes]:
    opener, alone = Opener(), Alone()
    return opener, alone, Lanes(opener, alone, stalled=_stalled)


def _calls(lane: Lanes, *calls: list[str], key: object = "org") -> list[asyncio.Task]:
    return [asyncio.create_task(lane.run(key, items)) for items in calls]


def test_calls_go_out_at_once_behind_those_in_flight_and_the_idle_channel_is_released():
    async def go():
        opener, _, lane = _lanes()
        first = _calls(lane, ["a"])
        await _settle()
        later = _calls(lane, ["b", "c"], ["d"])
        await _settle()
        channel, = opener.channels
        sent_before_any_answer = list(channel.sent)
        channel.answer(2)
        answered = await asyncio.gather(*first, later[0])
        released_while_one_in_flight = channel.released
        channel.answer()
        answered.append(await later[1])
        return sent_before_any_answer, answered, released_while_one_in_flight, channel.released, lane._lanes

    sent, answered, released_early, released, left = run(go())
    assert sent == [["a"], ["b", "c"], ["d"]], "each call went out at once, on the one channel"
    assert answered == [["aa"], ["bb", "cc"], ["dd"]], "each caller gets its own part"
    assert not released_early and released and left == {}, "given back once nothing is in flight"


def test_calls_that_arrive_while_the_channel_opens_go_out_on_it_together():
    async def go():
        opener, _, lane = _lanes()
        opener.gate.clear()
        calls = _calls(lane, ["a"], ["b"], ["c"])
        await _settle()
        opened_meanwhile = len(opener.channels)
        opener.gate.set()
        await _settle()
        channel, = opener.channels
        channel.answer(3)
        return opened_meanwhile, channel.sent, await asyncio.gather(*calls)

    opened_meanwhile, sent, answered = run(go())
    assert opened_meanwhile == 0 and sent == [["a"], ["b"], ["c"]]
    assert answered == [["aa"], ["bb"], ["cc"]]


def test_keys_do_not_wait_for_each_other():
    async def go():
        opener, _, lane = _lanes()
        stuck = _calls(lane, ["s1"], key="stalled-org")
        await _settle()
        other = _calls(lane, ["f1"], key="other-org")
        await _settle()
        stalled_channel, other_channel = opener.channels
        other_channel.answer()
        other_answer = await asyncio.wait_for(other[0], 1)
        stalled_channel.answer()
        return other_answer, await stuck[0]

    assert run(go()) == (["f1f1"], ["s1s1"])


def test_at_most_max_in_flight_calls_of_a_lane_are_in_flight():
    async def go():
        opener, _, lane = _lanes()
        calls = _calls(lane, *([f"q{i}"] for i in range(lanes.MAX_IN_FLIGHT + 3)))
        await _settle()
        channel, = opener.channels
        in_flight = [channel.in_flight]
        channel.answer(2)
        await _settle()
        in_flight.append(channel.in_flight)
        channel.answer(lanes.MAX_IN_FLIGHT + 1)
        answered = await asyncio.gather(*calls)
        return in_flight, len(channel.sent), answered

    in_flight, sent, answered = run(go())
    assert in_flight == [lanes.MAX_IN_FLIGHT, lanes.MAX_IN_FLIGHT], "two answered: two more went out"
    assert sent == lanes.MAX_IN_FLIGHT + 3
    assert answered == [[f"q{i}q{i}"] for i in range(lanes.MAX_IN_FLIGHT + 3)]


def test_a_failed_call_fails_only_its_caller_and_the_lane_goes_on():
    async def go():
        opener, _, lane = _lanes()
        calls = _calls(lane, ["a"], ["boom"], ["b"])
        await _settle()
        opener.channels[0].answer(3)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        after = _calls(lane, ["c"])
        await _settle()
        opener.channels[-1].answer()
        return outcomes, await after[0]

    (a, boom, b), after = run(go())
    assert a == ["aa"] and b == ["bb"] and isinstance(boom, RuntimeError)
    assert after == ["cc"]


def test_a_broken_channel_fails_what_it_carried_and_what_waits_goes_on_a_new_one():
    async def go():
        opener, _, lane = _lanes()
        calls = _calls(lane, *([f"q{i}"] for i in range(lanes.MAX_IN_FLIGHT + 2)))
        await _settle()
        first = opener.channels[0]
        first.break_()
        await _settle()
        second = opener.channels[1]
        second.answer(2)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        return outcomes, first.released, second.sent

    outcomes, released, sent_on_new = run(go())
    carried, waited = outcomes[:lanes.MAX_IN_FLIGHT], outcomes[lanes.MAX_IN_FLIGHT:]
    assert all(isinstance(o, ConnectionError) for o in carried), carried
    assert waited == [[f"q{i}q{i}"] for i in (lanes.MAX_IN_FLIGHT, lanes.MAX_IN_FLIGHT + 1)]
    assert released, "the broken channel is given back (its connection closed, its slot freed)"
    assert sent_on_new == [[f"q{lanes.MAX_IN_FLIGHT}"], [f"q{lanes.MAX_IN_FLIGHT + 1}"]]


def test_a_caller_cancelled_while_waiting_is_not_sent():
    async def go():
        opener, _, lane = _lanes()
        calls = _calls(lane, *([f"q{i}"] for i in range(lanes.MAX_IN_FLIGHT)))
        await _settle()
        gone, kept = _calls(lane, ["gone"], ["kept"])
        await _settle()
        gone.cancel()
        await _settle()
        channel = opener.channels[0]
        channel.answer(lanes.MAX_IN_FLIGHT)
        await _settle()
        channel.answer()
        await asyncio.gather(*calls)
        return await kept, channel.sent[lanes.MAX_IN_FLIGHT:]

    assert run(go()) == (["keptkept"], [["kept"]])


def test_a_caller_cancelled_while_its_channel_opens_is_not_sent_and_another_opens_it():
    async def go():
        opener, _, lane = _lanes()
        opener.gate.clear()
        opening, waiting = _calls(lane, ["gone"], ["kept"])
        await _settle()
        opening.cancel()
        await _settle()
        opener.gate.set()
        await _settle()
        channel, = opener.channels
        channel.answer()
        return await waiting, channel.sent, opening.cancelled()

    assert run(go()) == (["keptkept"], [["kept"]], True)


def test_a_channel_that_cannot_be_opened_fails_each_waiting_caller_and_the_next_call_tries_again():
    async def go():
        opener, _, lane = _lanes()
        opener.gate.clear()
        opener.fail = ConnectionError("no database")
        calls = _calls(lane, ["a"], ["b"])
        await _settle()
        opener.gate.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        opener.fail = None
        after = _calls(lane, ["c"])
        await _settle()
        opener.channels[0].answer()
        return outcomes, await after[0]

    outcomes, after = run(go())
    assert all(isinstance(o, ConnectionError) for o in outcomes), outcomes
    assert after == ["cc"]


def test_a_stalled_answer_opens_the_lane_so_the_next_calls_go_side_by_side():
    async def go():
        opener, alone, lane = _lanes()
        calls = _calls(lane, ["locked"], *([f"q{i}"] for i in range(1, lanes.MAX_IN_FLIGHT)), ["w0"], ["w1"])
        await _settle()
        channel = opener.channels[0]
        alone.release.clear()
        channel.answer()  # the stalled one: the two waiting go alone, not into its room
        await _settle()
        waiting_sent_alone = list(alone.calls)
        side = _calls(lane, ["s0"], ["s1"])
        await _settle()
        in_flight_together = alone.calls[len(waiting_sent_alone):]
        alone.release.set()
        channel.answer(lanes.MAX_IN_FLIGHT - 1)
        answered = await asyncio.gather(*calls, *side)
        return waiting_sent_alone, in_flight_together, answered[-2:], len(opener.channels)

    waiting, together, side, channels = run(go())
    assert waiting == [["w0"], ["w1"]], "what waited when the lane opened went each on its own"
    assert together == [["s0"], ["s1"]], "while open, calls do not wait for each other"
    assert side == [["s0s0"], ["s1s1"]] and channels == 1


def test_an_open_lane_closes_again_after_open_seconds(monkeypatch):
    monkeypatch.setattr(lanes, "OPEN_SECONDS", 0.0)

    async def go():
        opener, alone, lane = _lanes()
        stalled = _calls(lane, ["locked"])
        await _settle()
        opener.channels[0].answer()
        await stalled[0]
        after = _calls(lane, ["a"])
        await _settle()
        opener.channels[-1].answer()
        return await after[0], alone.calls, len(opener.channels)

    assert run(go()) == (["aa"], [], 2), "closed again: the call rode a channel, not alone"


@pytest.mark.parametrize("key", ["org", ("caller", b"hash")])
def test_any_hashable_is_a_key(key):
    async def go():
        opener, _, lane = _lanes()
        call = _calls(lane, ["k"], key=key)
        await _settle()
        opener.channels[0].answer()
        return await call[0]

    assert run(go()) == ["kk"]
