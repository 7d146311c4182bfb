"""Row Level Security of meetings, participants, rooms and daily_events as PostgREST
applies it: members of the meeting's org read (never rooms.secrets), nobody but the
service role writes, daily_events is the service role's alone."""
from __future__ import annotations

import pytest

from tests.support.daily import apply, event, make_meeting
from tests.support.pg import raises_sqlstate, snapshot

PERSONAS = ("anon", "owner", "outsider", "member", "admin", "banned", "service")
READERS = {"owner", "member", "admin", "service"}
TABLES = {
    "public.meetings": ("select id from public.meetings where org_id = %(org)s and id = %(mid)s",
                        "insert into public.meetings (org_id, room_name) values (%(org)s, 'forged') returning id",
                        "update public.meetings set status = 'cancelled' where org_id = %(org)s returning id",
                        "delete from public.meetings where org_id = %(org)s returning id"),
    "public.participants": ("select id from public.participants where org_id = %(org)s",
                            "insert into public.participants (meeting_id, org_id, daily_participant_id) "
                            "values (%(mid)s, %(org)s, 'forged') returning id",
                            "update public.participants set duration_seconds = 0 where org_id = %(org)s returning id",
                            "delete from public.participants where org_id = %(org)s returning id"),
    "public.rooms": ("select meeting_id from public.rooms where org_id = %(org)s",
                     "insert into public.rooms (meeting_id, org_id) values (%(mid2)s, %(org)s) returning meeting_id",
                     "update public.rooms set state = '{}' where org_id = %(org)s returning meeting_id",
                     "delete from public.rooms where org_id = %(org)s returning meeting_id"),
    "public.daily_events": ("select id from public.daily_events where meeting_id = %(mid)s",
                            "insert into public.daily_events (id, type, status, payload) "
                            "values ('forged', 'x', 'ignored', '{}') returning id",
                            "update public.daily_events set error = 'x' where meeting_id = %(mid)s returning id",
                            "delete from public.daily_events where meeting_id = %(mid)s returning id"),
}


@pytest.fixture
def meetings(conn, cast):
    mid, room = make_meeting(conn, cast.team, cast.owner)
    mid2, _ = make_meeting(conn, cast.team, cast.owner)
    other, other_room = make_meeting(conn, cast.other_team, cast.outsider)
    apply(conn, event("participant.joined", room), event("participant.joined", other_room))
    for m, org in ((mid, cast.team), (other, cast.other_team)):
        conn.execute("insert into public.rooms (meeting_id, org_id, state) values (%s, %s, '{\"a\": 1}')", (m, org))
    return {"org": cast.team, "mid": mid, "mid2": mid2, "other": other}


@pytest.mark.parametrize("table", list(TABLES))
@pytest.mark.parametrize("who", PERSONAS)
def test_select(conn, api, meetings, table, who):
    sql = TABLES[table][0]
    if who == "anon" or (table == "public.daily_events" and who != "service"):
        with raises_sqlstate("42501"):
            api(who)(sql, meetings)
        return
    got = api(who)(sql, meetings)
    if who in READERS:
        assert len(got) == 1, f"{who} reads the team's row of {table}"
    else:
        assert got == [], f"{who} sees none of the team's {table} (USING denial, no error)"


@pytest.mark.parametrize("table", list(TABLES))
@pytest.mark.parametrize("op", [1, 2, 3], ids=["insert", "update", "delete"])
@pytest.mark.parametrize("who", [p for p in PERSONAS if p != "service"])
def test_only_the_service_role_writes(conn, api, meetings, table, op, who):
    before = snapshot(conn, table)
    with raises_sqlstate("42501"):
        api(who)(TABLES[table][op], meetings)
    assert snapshot(conn, table) == before, f"{who}'s refused write on {table} changed nothing"


@pytest.mark.parametrize("table", list(TABLES))
def test_the_service_role_writes(conn, api, meetings, table):
    svc = api("service")
    for op in (1, 2, 3):
        assert svc.count(TABLES[table][op], meetings) >= 1, f"service op {op} on {table}"


def test_members_see_only_their_orgs_meetings(conn, api, meetings, cast):
    assert {r["org_id"] for r in api("owner")("select org_id from public.meetings")} == {cast.team}
    assert {r["org_id"] for r in api("outsider")("select org_id from public.meetings")} == {cast.other_team}
    assert api("banned")("select id from public.meetings") == []


def test_sealed_secrets_are_never_selectable(conn, api, meetings):
    with raises_sqlstate("42501"):
        api("owner")("select secrets from public.rooms")
    assert api("owner")("select state from public.rooms") == [{"state": {"a": 1}}]


@pytest.mark.parametrize("call", [
    "select public.daily_apply_event(event_id := 'x', event_type := 'x', event_ts := 1, data := '{}', payload := '{}')",
    "select public.create_meeting(org_id := gen_random_uuid(), user_id := gen_random_uuid(), room_name := 'x', "
    "daily_room := '{}')",
    "select public.cancel_meeting(meeting_id := gen_random_uuid(), user_id := gen_random_uuid())",
    "select public.room_state_get(meeting_id := gen_random_uuid(), user_id := gen_random_uuid())",
    "select public.chat_meeting_check(meeting_id := gen_random_uuid())",
    "select public.reconcile_meeting(meeting_id := gen_random_uuid())",
])
@pytest.mark.parametrize("who", ["anon", "owner"])
def test_service_rpcs_are_not_callable_by_api_roles(conn, api, meetings, call, who):
    with raises_sqlstate("42501", "permission denied for function"):
        api(who)(call)


def test_meeting_costs_for_members_only(conn, api, meetings, cast):
    conn.execute("insert into public.usage_events (org_id, meeting_id, request_id, status, prompt_tokens, "
                 "completion_tokens, total_tokens, cost_usd, credits) "
                 "values (%s, %s, 'r1', 'succeeded', 100, 50, 150, 0.000123, 1)", (cast.team, meetings["mid"]))
    sql = "select * from public.meeting_costs(%(org)s, array[%(mid)s]::uuid[])"
    [row] = api("member")(sql, meetings)
    assert (row["requests"], row["total_tokens"], str(row["cost_usd"]), row["participant_count"]) == \
        (1, 150, "0.000123000000", 1)
    assert api("outsider")(sql, meetings) == [] and api("banned")(sql, meetings) == []
    with raises_sqlstate("42501"):
        api("anon")(sql, meetings)
