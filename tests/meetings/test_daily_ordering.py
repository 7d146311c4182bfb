"""A meeting's life replayed in every order (all 24 orders of started / joined / left /
ended), with duplicates and a late duplicate joined, ends in the same rows with the
right durations."""
from __future__ import annotations

import itertools

import pytest

from tests.support.daily import T0, apply, event, make_meeting
from tests.support.pg import rows

START, JOIN, STAY, END = T0, T0 + 10, 600, T0 + 900


def life(room: str) -> dict:
    return {
        "started": event("meeting.started", room, start_ts=START, event_ts=START + 1),
        "joined": event("participant.joined", room, joined_at=JOIN, event_ts=JOIN + 1),
        "left": event("participant.left", room, joined_at=JOIN, duration=STAY, event_ts=JOIN + STAY + 1),
        "ended": event("meeting.ended", room, start_ts=int(START), end_ts=END, event_ts=END + 20),
    }


def final(conn, mid):
    return (rows(conn, "select status::text, started_at, ended_at, duration_seconds, daily_meeting_id "
                       "from public.meetings where id = %s", (mid,)),
            rows(conn, "select daily_participant_id, role::text, joined_at, left_at, duration_seconds "
                       "from public.participants where meeting_id = %s", (mid,)))


@pytest.mark.parametrize("order", list(itertools.permutations(["started", "joined", "left", "ended"])),
                         ids="-".join)
def test_every_order_ends_in_the_same_rows(conn, cast, order):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    events = life(room)
    apply(conn, *(events[k] for k in order))
    meeting, people = final(conn, mid)
    assert meeting[0]["status"] == "ended" and meeting[0]["duration_seconds"] == 900
    assert meeting[0]["started_at"].timestamp() == START and meeting[0]["ended_at"].timestamp() == END
    assert len(people) == 1 and people[0]["duration_seconds"] == STAY
    assert people[0]["joined_at"].timestamp() == JOIN and people[0]["left_at"].timestamp() == JOIN + STAY
    # and the same again with every event delivered twice, in reverse, plus a late joined
    mid2, room2 = make_meeting(conn, cast.team, cast.owner)
    again = life(room2)
    replay = [again[k] for k in order] + [again[k] for k in reversed(order)]
    replay.append(event("participant.joined", room2, joined_at=JOIN, event_ts=END + 60))
    apply(conn, *replay)
    m2, p2 = final(conn, mid2)
    assert m2 == meeting and p2 == people
