"""profiles: a user reads and edits (name, avatar, company only) their own row; platform
admins read every row; banned users see nothing; only the service role writes the rest."""
from __future__ import annotations

import uuid

import pytest

from tests.support.personas import PERSONAS
from tests.support.pg import as_user, raises_sqlstate, scalar, snapshot

ALL_PROFILES = "select count(*) from public.profiles"


# Section - select

@pytest.mark.parametrize("who, sees_own", [(p, p != "banned") for p in PERSONAS])
def test_user_reads_own_profile_unless_banned(api, cast, who, sees_own):
    me = getattr(cast, who)
    rows = api(who)("select id, email, role from public.profiles where id = %s", (me.id,))
    assert len(rows) == (1 if sees_own else 0), f"{who} {'reads' if sees_own else 'must not read'} their own profile"
    if sees_own:
        assert rows[0]["email"] == me.email, f"{who} sees their own email"


@pytest.mark.parametrize("who", ["owner", "admin", "member", "outsider", "banned"])
def test_user_does_not_read_other_profiles(api, cast, who):
    me = getattr(cast, who)
    rows = api(who)("select id from public.profiles where id <> %s", (me.id,))
    assert rows == [], f"{who} must not read anyone else's profile, even fellow members'"


def test_platform_admin_reads_every_profile(api, conn, cast):
    rows = api("platform_admin")("select id from public.profiles")
    ids = {r["id"] for r in rows}
    assert len(rows) == scalar(conn, ALL_PROFILES), "a platform admin reads every profile"
    assert {cast.owner.id, cast.member.id, cast.outsider.id, cast.banned.id} <= ids, \
        "including other users' and banned users' profiles"


def test_banned_platform_admin_reads_nothing(api, conn, cast):
    conn.execute("update public.profiles set is_active = false where id = %s", (cast.platform_admin.id,))
    rows = api("platform_admin")("select id from public.profiles")
    assert rows == [], "an inactive platform admin loses admin reads along with everything else"


def test_suspended_user_reads_no_profile(api, conn, suspended):
    rows = as_user(conn, suspended)("select id from public.profiles")
    assert rows == [], "a banned/inactive user reads no profile, not even their own"


def test_ban_that_has_expired_no_longer_applies(conn, cast):
    conn.execute("update auth.users set banned_until = now() - interval '1 minute' where id = %s", (cast.member.id,))
    rows = as_user(conn, cast.member)("select id from public.profiles where id = %s", (cast.member.id,))
    assert len(rows) == 1, "a banned_until in the past does not shut the user out"


def test_anon_cannot_read_profiles(api):
    with raises_sqlstate("42501"):
        api("anon")("select id from public.profiles")


def test_service_role_reads_every_profile(api, conn):
    rows = api("service")("select id from public.profiles")
    assert len(rows) == scalar(conn, ALL_PROFILES), "the service role reads every profile"


# Section - insert

@pytest.mark.parametrize("who", PERSONAS)
def test_authenticated_cannot_insert_profiles(api, conn, cast, who):
    before = snapshot(conn, "public.profiles")
    with raises_sqlstate("42501"):
        api(who)("insert into public.profiles (id, email) values (%s, 'x@example.test')", (uuid.uuid4(),))
    assert snapshot(conn, "public.profiles") == before, f"{who}'s refused insert changed nothing"


def test_anon_cannot_insert_profiles(api):
    with raises_sqlstate("42501"):
        api("anon")("insert into public.profiles (id) values (%s)", (uuid.uuid4(),))


def test_service_role_inserts_a_profile(api, conn, cast):
    conn.execute("delete from public.profiles where id = %s", (cast.member.id,))
    n = api("service").count("insert into public.profiles (id, email) values (%s, %s) returning id",
                             (cast.member.id, cast.member.email))
    assert n == 1, "the service role may write profiles directly"
    assert scalar(conn, "select email from public.profiles where id = %s", (cast.member.id,)) == cast.member.email, \
        "the profile is back"


# Section - update

@pytest.mark.parametrize("who", [p for p in PERSONAS if p != "banned"])
def test_user_updates_own_name_avatar_and_company(api, conn, cast, who):
    me = getattr(cast, who)
    n = api(who).count(
        "update public.profiles set full_name = 'New Name', avatar_url = 'https://img.test/a.png', "
        "company = 'Initech' where id = %s returning id", (me.id,))
    assert n == 1, f"{who} updates their own profile"
    row = conn.execute("select full_name, avatar_url, company from public.profiles where id = %s", (me.id,)).fetchone()
    assert row == ("New Name", "https://img.test/a.png", "Initech"), "the three editable columns changed"


@pytest.mark.parametrize("column, value", [("role", "admin"), ("email", "evil@example.test"),
                                           ("is_active", True), ("last_sign_in_at", None)])
def test_user_cannot_update_protected_columns(api, conn, cast, column, value):
    before = snapshot(conn, "public.profiles")
    with raises_sqlstate("42501"):
        api("member")(f"update public.profiles set {column} = %s where id = %s", (value, cast.member.id))
    assert snapshot(conn, "public.profiles") == before, f"a refused update of {column} changed nothing"


@pytest.mark.parametrize("who", PERSONAS)
def test_user_cannot_update_someone_elses_profile(api, conn, cast, who):
    victim = cast.owner if who == "member" else cast.member
    name = scalar(conn, "select full_name from public.profiles where id = %s", (victim.id,))
    n = api(who).count("update public.profiles set full_name = 'Hijacked' where id = %s returning id", (victim.id,))
    assert n == 0, f"{who} changes no row of another user's profile (platform admins included)"
    assert scalar(conn, "select full_name from public.profiles where id = %s", (victim.id,)) == name, \
        "the other user's name is unchanged"


def test_platform_admin_cannot_change_roles_directly(api, conn, cast):
    before = snapshot(conn, "public.profiles")
    with raises_sqlstate("42501"):
        api("platform_admin")("update public.profiles set role = 'banned' where id = %s", (cast.member.id,))
    assert snapshot(conn, "public.profiles") == before, "role changes go through the service role; nothing changed"


def test_banned_user_cannot_update_own_profile(api, conn, cast):
    n = api("banned").count("update public.profiles set full_name = 'Still Here' where id = %s returning id",
                            (cast.banned.id,))
    assert n == 0, "a banned user changes no row, not even their own"
    assert scalar(conn, "select full_name from public.profiles where id = %s", (cast.banned.id,)) == "Banned", \
        "the banned user's name is unchanged"


def test_suspended_user_cannot_update_own_profile(conn, suspended):
    n = as_user(conn, suspended).count("update public.profiles set company = 'X' where id = %s returning id",
                                       (suspended.id,))
    assert n == 0, "a banned/inactive user changes no row"
    assert scalar(conn, "select company from public.profiles where id = %s", (suspended.id,)) is None, \
        "the company is unchanged"


def test_anon_cannot_update_profiles(api, conn, cast):
    before = snapshot(conn, "public.profiles")
    with raises_sqlstate("42501"):
        api("anon")("update public.profiles set full_name = 'Anon' where id = %s", (cast.member.id,))
    assert snapshot(conn, "public.profiles") == before, "anon's refused update changed nothing"


def test_service_role_updates_role(api, conn, cast):
    n = api("service").count("update public.profiles set role = 'premium' where id = %s returning id",
                             (cast.member.id,))
    assert n == 1, "the service role updates any column"
    assert scalar(conn, "select role::text from public.profiles where id = %s", (cast.member.id,)) == "premium", \
        "the role changed"


# Section - delete

@pytest.mark.parametrize("who", PERSONAS)
def test_authenticated_cannot_delete_profiles(api, conn, cast, who):
    me = getattr(cast, who)
    before = snapshot(conn, "public.profiles")
    with raises_sqlstate("42501"):
        api(who)("delete from public.profiles where id = %s", (me.id,))
    assert snapshot(conn, "public.profiles") == before, f"{who}'s refused delete changed nothing"


def test_anon_cannot_delete_profiles(api, conn):
    before = snapshot(conn, "public.profiles")
    with raises_sqlstate("42501"):
        api("anon")("delete from public.profiles")
    assert snapshot(conn, "public.profiles") == before, "anon's refused delete changed nothing"


def test_service_role_deletes_a_profile(api, conn, cast):
    n = api("service").count("delete from public.profiles where id = %s returning id", (cast.member.id,))
    assert n == 1, "the service role deletes profiles"
    assert scalar(conn, "select count(*) from public.profiles where id = %s", (cast.member.id,)) == 0, \
        "the profile is gone"
