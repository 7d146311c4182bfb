"""Through the real server, with Daily's REST API faked at the HTTP layer
(lib.local.fake_daily): the webhook's signature checks, create and cancel permissions,
Daily's errors, and a chat call naming another org's meeting."""
from __future__ import annotations

import httpx
import pytest

from lib.core.errors import BadRequest
from lib.meetings.signature import compute_signature, verify
from tests.support.daily import event, make_meeting, now, post_event, signed
from tests.support.pg import snapshot
from tests.support.secrets import DAILY_WEBHOOK_SECRET, WRONG_DAILY_WEBHOOK_SECRET, bearer

WRITTEN = ("public.daily_events", "public.meetings", "public.participants")


def test_signature_is_daily_scheme():
    import base64
    import hashlib
    import hmac
    body, ts = b'{"test":"test"}', "1800000000300"
    key = base64.b64decode(DAILY_WEBHOOK_SECRET)
    expected = base64.b64encode(hmac.new(key, ts.encode() + b"." + body, hashlib.sha256).digest()).decode()
    assert compute_signature(body, DAILY_WEBHOOK_SECRET, ts) == expected
    assert verify(body, expected, ts, DAILY_WEBHOOK_SECRET, now=1800000000.3) == 1800000000.3, "milliseconds"
    with pytest.raises(BadRequest, match="tolerance"):
        verify(body, expected, ts, DAILY_WEBHOOK_SECRET, now=1800000000.3 + 301)


def _post(world, path, body=None, who=None, method="POST"):
    headers = bearer(who) if who is not None else {}
    return httpx.request(method, f"{world.base}{path}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("case", ["wrong secret", "stale", "future", "no signature", "no timestamp", "tampered"])
def test_a_bad_signature_or_stale_timestamp_is_400_and_writes_nothing(world, case):
    with world.connect() as c:
        _, room = make_meeting(c, world.people.team, world.people.owner)
        before = snapshot(c, *WRITTEN)
    raw, headers = signed(event("meeting.started", room),
                          secret=WRONG_DAILY_WEBHOOK_SECRET if case == "wrong secret" else DAILY_WEBHOOK_SECRET,
                          timestamp={"stale": now() - 600, "future": now() + 600}.get(case))
    if case == "no signature":
        del headers["X-Webhook-Signature"]
    if case == "no timestamp":
        del headers["X-Webhook-Timestamp"]
    if case == "tampered":
        raw = raw.replace(b"meeting.started", b"meeting.ended")
    r = httpx.post(f"{world.base}/api/daily/webhook", content=raw, headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_signature", r.text
    with world.connect() as c:
        assert snapshot(c, *WRITTEN) == before


def test_the_endpoint_check_and_events_answer_200(world):
    r = post_event(world.base, b'{"test":"test"}')
    assert r.status_code == 200 and r.json()["test"] is True
    with world.connect() as c:
        _, room = make_meeting(c, world.people.team, world.people.owner)
    assert post_event(world.base, event("meeting.started", room)).json()["status"] == "processed"
    unknown = post_event(world.base, event("meeting.started", "nobody-knows"))
    assert unknown.status_code == 200 and unknown.json()["status"] == "ignored"
    assert post_event(world.base, b"not json").status_code == 400


def test_create_and_cancel_a_meeting(world):
    p = world.people
    with world.connect() as c:
        c.execute("update public.organizations set plan_id = 'pro' where id = %s", (p.team,))
    r = _post(world, "/api/meetings", {"org_id": str(p.team), "name": "standup", "max_participants": 5,
                                       "enable_recording": True}, p.member)
    assert r.status_code == 201, r.text
    meeting = r.json()
    assert meeting["status"] == "scheduled" and meeting["room_url"] == "https://fake.daily.co/standup"
    sent = next(b for m, path, b in world.daily.requests if m == "POST" and path == "/v1/rooms")
    assert sent["name"] == "standup" and sent["privacy"] == "private"
    assert sent["properties"]["max_participants"] == 5 and sent["properties"]["enable_recording"] == "cloud"
    assert sent["properties"]["exp"] > now()
    mid = meeting["id"]
    assert _post(world, f"/api/meetings/{mid}/cancel", None, p.outsider).status_code == 404
    with world.connect() as c:
        second, _ = make_meeting(c, p.team, p.owner, room="owners-room")
    assert _post(world, f"/api/meetings/{second}/cancel", None, p.member).status_code == 403, "not the creator"
    r = _post(world, f"/api/meetings/{mid}/cancel", None, p.member)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", "the creator cancels"
    assert "standup" not in world.daily.rooms
    r = _post(world, f"/api/meetings/{second}/cancel", None, p.admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", "an admin cancels (already gone at Daily)"


def test_outsiders_and_plan_limits_are_refused_before_daily(world):
    p = world.people
    assert _post(world, "/api/meetings", {"org_id": str(p.team)}, p.outsider).status_code == 403
    assert _post(world, "/api/meetings", {"org_id": str(p.team)}, p.banned).status_code == 403
    assert _post(world, "/api/meetings", {"org_id": str(p.team)}).status_code == 401
    r = _post(world, "/api/meetings", {"org_id": str(p.team), "max_participants": 50}, p.owner)
    assert r.status_code == 403 and "at most 10 participants" in r.json()["error"]["message"], "free plan"
    r = _post(world, "/api/meetings", {"org_id": str(p.team), "enable_recording": True}, p.owner)
    assert r.status_code == 403 and "recording" in r.json()["error"]["message"]
    assert not world.daily.rooms, "Daily was never called"


def test_daily_errors_are_502_and_store_nothing(world):
    p = world.people
    with world.connect() as c:
        before = snapshot(c, "public.meetings")
    world.daily.fail_next(400, "a room named x already exists", "invalid-request-error")
    r = _post(world, "/api/meetings", {"org_id": str(p.team), "name": "x"}, p.owner)
    assert r.status_code == 502 and "a room named x already exists" in r.json()["error"]["message"]
    world.daily.fail_next(500, "daily is down")
    assert _post(world, "/api/meetings", {"org_id": str(p.team)}, p.owner).status_code == 502
    with world.connect() as c:
        assert snapshot(c, "public.meetings") == before
        mid, _ = make_meeting(c, p.team, p.owner, room="keep-me")
    world.daily.fail_next(500, "daily is down")
    assert _post(world, f"/api/meetings/{mid}/cancel", None, p.owner).status_code == 502
    with world.connect() as c:
        assert c.execute("select status::text from public.meetings where id = %s", (mid,)).fetchone()[0] == \
            "scheduled", "a Daily failure changes nothing"


def test_x_meeting_id_of_another_org_is_refused(world):
    p = world.people
    with world.connect() as c:
        mine, _ = make_meeting(c, p.team, p.owner)
        theirs, _ = make_meeting(c, p.other_team, p.outsider)
        args = "meeting_id := %s, user_id := %s, org_id := %s"
        assert c.execute(f"select public.chat_meeting_check({args})", (mine, p.member.id, p.team)).fetchone()[0][
            "checked"] is True
        with pytest.raises(Exception, match="not a meeting of the organization"):
            c.execute(f"select public.chat_meeting_check({args})", (theirs, p.member.id, p.team))
        with pytest.raises(Exception, match="usage_events_meeting_fkey"):
            c.execute("insert into public.usage_events (org_id, meeting_id, request_id, status) "
                      "values (%s, %s, 'forged', 'succeeded')", (p.team, theirs))
    r = httpx.post(f"{world.base}/v1/chat/completions", headers={**bearer(p.member), "X-Org-Id": str(p.team),
                                                                  "X-Meeting-Id": str(theirs)},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert r.status_code == 403 and "X-Meeting-Id" in r.json()["error"]["message"], r.text
    with world.connect() as c:
        assert c.execute("select count(*) from public.credit_reservations").fetchone()[0] == 0, "nothing reserved"
