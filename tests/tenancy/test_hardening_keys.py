"""Finding 3 of issue 11: bans reach API keys. begin_chat_request (as the chat proxy, the
service role, calls it) refuses with PT401 a key whose creator is banned, inactive or
deleted, and a key of an organization whose every owner is; an active creator in an
organization with an active owner keeps working."""
from __future__ import annotations

import hashlib
import uuid

import pytest

from tests.support.personas import BAN_KINDS, add_member, ban, make_team, make_user
from tests.support.pg import as_service, as_user, raises_sqlstate, scalar


def new_key(conn, person, org) -> str:
    return as_user(conn, person).one(
        "select public.create_api_key(org_id := %s, name := 'k') ->> 'key' as key", (org,))["key"]


def begin(conn, key: str):
    return as_service(conn).one(
        "select public.begin_chat_request(request_id := %s, model := 'gpt-4o-mini', prompt_tokens_bound := 10, "
        "completion_tokens_limit := 10, key_hash := %s) as r",
        (f"hardening-{uuid.uuid4().hex}", hashlib.sha256(key.encode()).digest()))["r"]


@pytest.fixture
def team(conn):
    owner, admin = make_user(conn, "owner"), make_user(conn, "admin")
    org = make_team(conn, owner)
    add_member(conn, org, admin, "admin")
    return owner, admin, org


def test_key_of_an_active_creator_works(conn, team):
    owner, admin, org = team
    assert begin(conn, new_key(conn, admin, org))["org_id"] == str(org)


@pytest.mark.parametrize("how", BAN_KINDS)
def test_key_of_a_banned_creator_is_401_while_the_owner_is_active(conn, team, how):
    owner, admin, org = team
    key = new_key(conn, admin, org)
    ban(conn, admin, how)
    before = scalar(conn, "select count(*) from public.credit_reservations where org_id = %s", (org,))
    with raises_sqlstate("PT401", "banned, inactive or deleted"):
        begin(conn, key)
    assert scalar(conn, "select count(*) from public.credit_reservations where org_id = %s", (org,)) == before, \
        "nothing was reserved"


def test_key_of_a_deleted_creator_is_401(conn, team):
    owner, admin, org = team
    key = new_key(conn, admin, org)
    conn.execute("delete from auth.users where id = %s", (admin.id,))
    with raises_sqlstate("PT401", "banned, inactive or deleted"):
        begin(conn, key)


@pytest.mark.parametrize("how", BAN_KINDS)
def test_key_of_an_org_whose_every_owner_is_banned_is_401(conn, team, how):
    owner, admin, org = team
    key = new_key(conn, admin, org)
    ban(conn, owner, how)
    with raises_sqlstate("PT401", "every owner"):
        begin(conn, key)


def test_one_active_co_owner_keeps_other_creators_keys_working(conn, team):
    owner, admin, org = team
    co_owner = make_user(conn, "co-owner")
    add_member(conn, org, co_owner, "owner")
    key = new_key(conn, admin, org)
    ban(conn, owner, "role")
    assert begin(conn, key)["org_id"] == str(org), "the admin's key works while one owner is active"
