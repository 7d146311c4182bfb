"""Sign-up: a new auth.users row gets a profile, a personal organization on the free plan
and an owner membership; later email and sign-in changes flow to the profile."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.support.personas import make_user, personal_org
from tests.support.pg import as_user, scalar


def signup(conn, email: str | None, meta: dict) -> uuid.UUID:
    """Insert an auth user the way GoTrue does for a new sign-up."""
    uid = uuid.uuid4()
    conn.execute("insert into auth.users (id, aud, role, email, raw_user_meta_data, raw_app_meta_data) "
                 "values (%s, 'authenticated', 'authenticated', %s, %s, '{\"provider\": \"email\"}')",
                 (uid, email, json.dumps(meta)))
    return uid


def profile(conn, uid) -> dict:
    row = conn.execute("select email, full_name, avatar_url, company, role::text, is_active, last_sign_in_at "
                       "from public.profiles where id = %s", (uid,)).fetchone()
    assert row is not None, "sign-up created a profile"
    return dict(zip(["email", "full_name", "avatar_url", "company", "role", "is_active", "last_sign_in_at"], row))


# Section - profile

def test_signup_creates_profile_from_metadata(conn):
    uid = signup(conn, "ada@example.test", {"full_name": "Ada Lovelace", "avatar_url": "https://img.test/ada.png"})
    p = profile(conn, uid)
    assert p["email"] == "ada@example.test", "email copied from auth.users"
    assert p["full_name"] == "Ada Lovelace", "full_name from raw_user_meta_data.full_name"
    assert p["avatar_url"] == "https://img.test/ada.png", "avatar_url from raw_user_meta_data.avatar_url"
    assert (p["role"], p["is_active"], p["company"]) == ("user", True, None), "a plain active user, no company"


def test_signup_falls_back_to_name_and_picture(conn):
    uid = signup(conn, "grace@example.test", {"name": "Grace Hopper", "picture": "https://img.test/g.png"})
    p = profile(conn, uid)
    assert p["full_name"] == "Grace Hopper", "full_name from raw_user_meta_data.name when full_name is absent"
    assert p["avatar_url"] == "https://img.test/g.png", "avatar_url from the OAuth picture claim"


def test_full_name_wins_over_name(conn):
    uid = signup(conn, "both@example.test", {"full_name": "Full Name", "name": "Short"})
    assert profile(conn, uid)["full_name"] == "Full Name", "full_name is preferred over name"


@pytest.mark.parametrize("meta", [{}, {"full_name": "   "}, {"full_name": None, "name": ""}])
def test_signup_without_a_name(conn, meta):
    uid = signup(conn, "nameless@example.test", meta)
    assert profile(conn, uid)["full_name"] is None, f"no usable name in {meta} leaves full_name empty"
    name = scalar(conn, "select name from public.organizations where personal_owner_id = %s", (uid,))
    assert name == "nameless", "the personal org is named after the email's local part"


def test_signup_without_email_or_name(conn):
    uid = signup(conn, None, {})
    assert profile(conn, uid)["email"] is None, "a phone or anonymous sign-up has no email"
    name = scalar(conn, "select name from public.organizations where personal_owner_id = %s", (uid,))
    assert name == "Personal", "the personal org falls back to 'Personal'"


def test_signup_with_overlong_metadata_still_succeeds(conn):
    uid = signup(conn, "long@example.test", {"full_name": "N" * 500, "avatar_url": "https://img.test/" + "a" * 3000})
    p = profile(conn, uid)
    assert p["full_name"] == "N" * 200, "full_name is cut to the column limit instead of failing sign-up"
    assert p["avatar_url"] is None, "an avatar URL over the limit is dropped instead of failing sign-up"
    name = scalar(conn, "select name from public.organizations where personal_owner_id = %s", (uid,))
    assert name == "N" * 100, "the personal org name is cut to 100 characters"


def test_blank_full_name_falls_back_to_name(conn):
    uid = signup(conn, "blank@example.test", {"full_name": "  ", "name": "Provider Name"})
    assert profile(conn, uid)["full_name"] == "Provider Name", "a blank full_name does not hide a usable name"


def test_signup_with_empty_email(conn):
    uid = signup(conn, "", {})
    name = scalar(conn, "select name from public.organizations where personal_owner_id = %s", (uid,))
    assert name == "Personal", "an empty email (some providers) still gives a valid personal org name"


def test_signup_copies_last_sign_in(conn):
    uid = uuid.uuid4()
    conn.execute("insert into auth.users (id, aud, role, email, raw_user_meta_data, last_sign_in_at) "
                 "values (%s, 'authenticated', 'authenticated', 'oauth@example.test', '{}', "
                 "'2026-01-02T03:04:05Z')", (uid,))
    assert profile(conn, uid)["last_sign_in_at"].isoformat() == "2026-01-02T03:04:05+00:00", \
        "an OAuth sign-up that is also a sign-in records last_sign_in_at"


# Section - personal organization

def test_signup_creates_personal_org_on_free_plan(conn):
    uid = signup(conn, "lin@example.test", {"full_name": "Lin"})
    row = conn.execute("select id, name, slug, personal, plan_id, created_by from public.organizations "
                       "where personal_owner_id = %s", (uid,)).fetchone()
    assert row is not None, "sign-up created a personal organization"
    org_id, name, slug, personal, plan_id, created_by = row
    assert personal is True, "the organization is marked personal"
    assert plan_id == "free", "on the free plan"
    assert slug == f"personal-{uid.hex}", "slug is personal-<user id as hex>"
    assert name == "Lin", "named after the user"
    assert created_by == uid, "created by the new user"
    members = conn.execute("select user_id, role::text from public.organization_members where org_id = %s",
                           (org_id,)).fetchall()
    assert members == [(uid, "owner")], "the new user is its only member, as owner"


def test_new_user_sees_their_profile_and_personal_org(conn):
    person = make_user(conn, "newbie")
    me = as_user(conn, person)
    assert [r["id"] for r in me("select id from public.profiles")] == [person.id], "reads their own profile"
    orgs = me("select id, personal from public.organizations")
    assert orgs == [{"id": personal_org(conn, person), "personal": True}], "reads exactly their personal org"
    memberships = me("select role::text as role from public.organization_members")
    assert memberships == [{"role": "owner"}], "owns it"


def test_each_signup_gets_its_own_personal_org(conn):
    a, b = make_user(conn, "first"), make_user(conn, "second")
    assert personal_org(conn, a) != personal_org(conn, b), "personal orgs are per user"


# Section - auth.users updates

def test_email_change_flows_to_profile(conn):
    person = make_user(conn, "mover")
    conn.execute("update auth.users set email = 'moved@example.test' where id = %s", (person.id,))
    assert profile(conn, person.id)["email"] == "moved@example.test", "a confirmed email change reaches the profile"


def test_sign_in_flows_to_profile(conn):
    person = make_user(conn, "returning")
    conn.execute("update auth.users set last_sign_in_at = '2026-05-06T07:08:09Z' where id = %s", (person.id,))
    assert profile(conn, person.id)["last_sign_in_at"].isoformat() == "2026-05-06T07:08:09+00:00", \
        "last_sign_in_at reaches the profile"


def test_unrelated_auth_update_leaves_profile_alone(conn):
    person = make_user(conn, "steady")
    conn.execute("update public.profiles set full_name = 'Chosen Name' where id = %s", (person.id,))
    conn.execute("update auth.users set raw_user_meta_data = '{\"full_name\": \"Provider Name\"}' where id = %s",
                 (person.id,))
    assert profile(conn, person.id)["full_name"] == "Chosen Name", \
        "metadata refreshed by the provider does not overwrite the name the user chose"
