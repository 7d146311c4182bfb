"""Every Daily event type applied (as the webhook does after verification): what each
writes, duplicates, unknown rooms, numbers sent as strings, and payloads we cannot read
(stored failed, never refused)."""
from __future__ import annotations

import pytest

from lib.meetings.events import HANDLED_TYPES, HANDLERS, check_registry
from tests.support.daily import EVENT_TYPES, apply, event, make_meeting
from tests.support.pg import one, scalar, snapshot

TABLES = ("public.meetings", "public.participants")


def test_the_registry_is_every_documented_type_we_handle():
    assert set(HANDLED_TYPES) == set(EVENT_TYPES) == set(HANDLERS)
    with pytest.raises(RuntimeError, match="out of step"):
        check_registry({"meeting.started": HANDLERS["meeting.started"]}, ("meeting.started", "meeting.ended"))


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_every_event_type_is_processed_and_stored_raw(conn, cast, kind):
    mid, room = make_meeting(conn, cast.team, cast.owner, recording_id="c3df927c-f738-4471-a2b7-066fa7e95a6b")
    evt = event(kind, room)
    [answer] = apply(conn, evt)
    assert answer["status"] == "processed" and answer["duplicate"] is False, answer
    stored = one(conn, "select type, status::text, meeting_id, payload from public.daily_events where id = %s",
                 (evt["id"],))
    assert stored["type"] == kind and stored["status"] == "processed" and stored["meeting_id"] == mid
    assert stored["payload"] == evt, "the raw envelope is stored as received"


def test_what_each_event_writes(conn, cast):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    apply(conn, event("meeting.started", room))
    m = one(conn, "select status::text, started_at, daily_meeting_id from public.meetings where id = %s", (mid,))
    assert m["status"] == "in_progress" and m["daily_meeting_id"] == "6f2bd6a5-2f0e-4f1a-9c8e-0f0a7d4b1c11"
    apply(conn, event("participant.joined", room), event("participant.left", room))
    p = one(conn, "select role::text, name, joined_at, left_at, duration_seconds from public.participants "
                  "where meeting_id = %s", (mid,))
    assert p["role"] == "host" and p["name"] == "Ada" and p["duration_seconds"] == 1780
    apply(conn, event("meeting.ended", room))
    m = one(conn, "select status::text, duration_seconds from public.meetings where id = %s", (mid,))
    assert m == {"status": "ended", "duration_seconds": 1801}, "end_ts - start_ts, rounded"
    apply(conn, event("recording.started", room_name=room), event("recording.ready-to-download", room))
    apply(conn, event("transcript.started", room), event("transcript.ready-to-download", room))
    m = one(conn, "select recording_id, recording_status, transcript_id, transcript_status, metadata "
                  "from public.meetings where id = %s", (mid,))
    assert m["recording_id"] == "c3df927c-f738-4471-a2b7-066fa7e95a6b" and m["recording_status"] == "ready"
    assert m["transcript_id"] == "0c5a9e3e-1d5f-4f5e-b4a4-3a3f7a6b9b21" and m["transcript_status"] == "ready"
    assert m["metadata"]["recording"]["ready"]["s3_key"] == "your-domain/room-name/1708526100123"
    apply(conn, event("recording.error", room), event("transcript.error", room))
    assert scalar(conn, "select recording_status || '/' || transcript_status from public.meetings where id = %s",
                  (mid,)) == "ready/ready", "an error after ready never moves the status back"


def test_a_recording_started_before_its_room_is_known_is_linked_later(conn, cast):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    started = event("recording.started")
    assert apply(conn, started)[0]["status"] == "ignored"
    apply(conn, event("recording.ready-to-download", room))
    assert one(conn, "select status::text, meeting_id from public.daily_events where id = %s", (started["id"],)) == \
        {"status": "processed", "meeting_id": mid}


def test_an_error_alone_marks_the_recording_failed(conn, cast):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    apply(conn, event("recording.error", room))
    m = one(conn, "select recording_status, metadata from public.meetings where id = %s", (mid,))
    assert m["recording_status"] == "error" and "error_msg" in m["metadata"]["recording"]["error"]


def test_a_duplicate_changes_nothing(conn, cast):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    evt = event("participant.joined", room)
    apply(conn, evt)
    before = snapshot(conn, *TABLES)
    [again] = apply(conn, evt)
    assert again["duplicate"] is True and again["status"] == "processed"
    assert snapshot(conn, *TABLES) == before
    assert scalar(conn, "select attempts from public.daily_events where id = %s", (evt["id"],)) == 2


def test_an_unknown_room_is_stored_ignored(conn, cast):
    before = snapshot(conn, *TABLES)
    evt = event("meeting.started", "not-one-of-ours")
    [answer] = apply(conn, evt)
    assert answer["status"] == "ignored" and "unknown room" in answer["error"]
    assert snapshot(conn, *TABLES) == before
    assert scalar(conn, "select status::text from public.daily_events where id = %s", (evt["id"],)) == "ignored"


def test_an_unhandled_type_is_stored_ignored(conn, cast):
    _, room = make_meeting(conn, cast.team, cast.owner)
    evt = event("meeting.started", room)
    evt["type"] = "waiting-participant.joined"
    assert apply(conn, evt)[0]["status"] == "ignored"


def test_numbers_sent_as_strings_and_milliseconds(conn, cast):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    apply(conn, event("participant.joined", room, joined_at="1708526040000", owner="false"),
          event("participant.left", room, joined_at="1708526040.0", duration="600"),
          event("meeting.ended", room, start_ts="1708526000", end_ts=1708527000000))
    p = one(conn, "select role::text, duration_seconds, extract(epoch from joined_at)::bigint as j "
                  "from public.participants where meeting_id = %s", (mid,))
    assert p == {"role": "guest", "duration_seconds": 600, "j": 1708526040}
    assert scalar(conn, "select duration_seconds from public.meetings where id = %s", (mid,)) == 1000


def test_an_implausible_daily_duration_is_not_trusted(conn, cast):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    apply(conn, event("participant.left", room, joined_at=1708526040, duration=999999, event_ts=1708526640))
    assert scalar(conn, "select duration_seconds from public.participants where meeting_id = %s", (mid,)) == 600, \
        "joined_at + duration after the event was sent: the leave time is when it was sent"


def test_a_payload_we_cannot_read_is_stored_failed(conn, cast):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    evt = event("participant.joined", room)
    del evt["payload"]["session_id"]
    [answer] = apply(conn, evt)
    assert answer["status"] == "failed" and "session_id" in answer["error"]
    assert scalar(conn, "select count(*) from public.participants where meeting_id = %s", (mid,)) == 0


def test_a_known_user_is_linked(conn, cast):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    apply(conn, event("participant.joined", room, user_id=str(cast.member.id)),
          event("participant.joined", room, user_id=str(cast.outsider.id), session_id="other-session"),
          event("participant.joined", room, user_id="bot-notetaker", session_id="bot-session"))
    rows = conn.execute("select daily_participant_id, user_id, email, role::text from public.participants "
                        "where meeting_id = %s order by 1", (mid,)).fetchall()
    by = {r[0]: r[1:] for r in rows}
    assert by["9a1f4c2e-7b7d-4a53-8f55-2a4a1a5c9e01"] == (cast.member.id, cast.member.email, "host")
    assert by["other-session"][0] is None, "a user of another org is not linked"
    assert by["bot-session"][2] == "bot"
