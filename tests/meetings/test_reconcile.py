"""`tollbooth meetings reconcile`: after an outage, what Daily's REST API (the fake)
says fills the gaps, with the webhook's merge rules."""
from __future__ import annotations

from lib.meetings.daily_api import DailyClient
from lib.meetings.reconcile import reconcile
from tests.support.daily import T0, make_meeting
from tests.support.secrets import DAILY_API_KEY
from tests.support.stripe import ConnDatabase


def test_reconcile_fills_sessions_participants_recordings_and_transcripts(conn, cast):
    from lib.local.fake_daily import FakeDaily

    mid, room = make_meeting(conn, cast.team, cast.owner, daily_room_id="room-id-1")
    with FakeDaily() as daily:
        daily.add_session(room, T0, 900, [{"participant_id": "p1", "user_id": str(cast.member.id),
                                           "user_name": "Member", "join_time": int(T0 + 10), "duration": 600}])
        rec = daily.add_recording(room, T0 + 5, 800)
        tr = daily.add_transcript("room-id-1", 700)
        totals = reconcile(ConnDatabase(conn), DailyClient(DAILY_API_KEY, daily.base_url))
    assert totals == {"meetings": 1, "failed": 0, "participants": 1, "recordings": 1, "transcripts": 1}
    m = conn.execute("select status::text, duration_seconds, recording_id, recording_status, recording_url, "
                     "transcript_id, transcript_url from public.meetings where id = %s", (mid,)).fetchone()
    assert m[:4] == ("ended", 900, rec["id"], "ready") and m[4].endswith(f"{rec['id']}.mp4")
    assert m[5] == tr["transcriptId"] and m[6].endswith(".vtt")
    p = conn.execute("select user_id, duration_seconds from public.participants where meeting_id = %s",
                     (mid,)).fetchone()
    assert p == (cast.member.id, 600)


def test_a_daily_failure_is_counted_and_skipped(conn, cast):
    from lib.local.fake_daily import FakeDaily

    make_meeting(conn, cast.team, cast.owner)
    with FakeDaily() as daily:
        daily.fail_next(500, "down")
        totals = reconcile(ConnDatabase(conn), DailyClient(DAILY_API_KEY, daily.base_url))
    assert totals["failed"] >= 1
