"""The membership RPCs, called as PostgREST calls them (`select * from public.fn(arg := …)`
as the signed-in user). Every refusal is checked for its SQLSTATE and for having changed
nothing."""
from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from tests.support.personas import add_member, make_team, make_user, owners, personal_org
from tests.support.pg import Request, as_user, race, raises_sqlstate, scalar, snapshot

TABLES = ("public.organizations", "public.organization_members", "public.invitations", "public.profiles")


def rpc(request: Request, fn: str, **args) -> list[dict]:
    named = ", ".join(f"{name} := %({name})s" for name in args)
    return request(f"select * from public.{fn}({named})", args)


def refused(conn, request: Request, fn: str, sqlstate: str, match: str | None = None, **args) -> None:
    """The call fails with `sqlstate` and leaves every membership table as it was."""
    before = snapshot(conn, *TABLES)
    with raises_sqlstate(sqlstate, match):
        rpc(request, fn, **args)
    assert snapshot(conn, *TABLES) == before, f"the refused {fn}({args}) changed nothing"


def role_in(conn, org_id, person) -> str | None:
    return scalar(conn, "select role::text from public.organization_members where org_id = %s and user_id = %s",
                  (org_id, person.id))


def invite(request: Request, org_id, email: str, role: str = "member") -> dict:
    rows = rpc(request, "invite_member", org_id=org_id, email=email, role=role)
    assert len(rows) == 1, "invite_member returns one row"
    return rows[0]


# Section - create_organization

def test_create_organization_makes_caller_owner(api, conn, cast):
    rows = rpc(api("member"), "create_organization", name="  Side Gig  ", slug="side-gig")
    assert len(rows) == 1, "returns the new organization"
    org = rows[0]
    assert (org["name"], org["slug"], org["personal"], org["plan_id"]) == ("Side Gig", "side-gig", False, "free"), \
        "a team org on the free plan, name trimmed"
    assert org["created_by"] == cast.member.id, "created by the caller"
    members = conn.execute("select user_id, role::text from public.organization_members where org_id = %s",
                           (org["id"],)).fetchall()
    assert members == [(cast.member.id, "owner")], "the caller is its only member, as owner"
    seen = api("member")("select id from public.organizations where id = %s", (org["id"],))
    assert len(seen) == 1, "the creator can read it straight away"


@pytest.mark.parametrize("slug", ["Bad Slug", "UPPER", "-lead", "trail-", "under_score", "a" * 49, "personal-mine",
                                  "", None])
def test_create_organization_rejects_bad_slug(api, conn, slug):
    refused(conn, api("member"), "create_organization", "PT400", "slug", name="Fine", slug=slug)


@pytest.mark.parametrize("taken", ["acme", "other"])
def test_create_organization_rejects_taken_slug(api, conn, cast, taken):
    slug = taken if taken == "acme" else scalar(conn, "select slug from public.organizations where id = %s",
                                                 (cast.other_team,))
    refused(conn, api("member"), "create_organization", "PT409", "taken", name="Copycat", slug=slug)


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, None])
def test_create_organization_rejects_bad_name(api, conn, name):
    refused(conn, api("member"), "create_organization", "PT400", "name", name=name, slug="good-slug")


def test_create_organization_refuses_banned_user(conn, suspended):
    refused(conn, as_user(conn, suspended), "create_organization", "42501", "banned", name="Mine", slug="mine")


def test_create_organization_refuses_anon(api, conn):
    refused(conn, api("anon"), "create_organization", "42501", "permission denied", name="Anon", slug="anon-org")


# Section - invite_member

def test_invite_member_returns_token_once_and_stores_only_its_hash(api, conn, cast):
    out = invite(api("owner"), cast.team, "  New.Person@Example.TEST ")
    token = out["token"]
    assert re.fullmatch(r"[0-9a-f]{64}", token), "the token is 256 bits as 64 hex characters"
    row = conn.execute("select email, role::text, token_hash, invited_by, expires_at from public.invitations "
                       "where id = %s", (out["invitation_id"],)).fetchone()
    assert row is not None, "the invitation is stored"
    email, role, token_hash, invited_by, expires_at = row
    assert bytes(token_hash) == hashlib.sha256(token.encode()).digest(), "only sha256(token) is stored"
    assert token.encode() not in bytes(token_hash) and email != token, "the token itself is stored nowhere"
    assert (email, role, invited_by) == ("new.person@example.test", "member", cast.owner.id), \
        "address normalised, member role, inviter recorded"
    assert expires_at == out["expires_at"], "returns the stored expiry"
    assert timedelta(days=6) < expires_at - datetime.now(UTC) <= timedelta(days=7, minutes=1), \
        "expires in a week"


def test_every_invitation_gets_a_fresh_token(api, cast):
    a = invite(api("owner"), cast.team, "a@example.test")["token"]
    b = invite(api("owner"), cast.team, "b@example.test")["token"]
    assert a != b, "tokens are random per invitation"


def test_admin_invites_a_member(api, conn, cast):
    out = invite(api("admin"), cast.team, "helper@example.test")
    assert scalar(conn, "select invited_by from public.invitations where id = %s", (out["invitation_id"],)) == \
        cast.admin.id, "an admin invites members"


def test_owner_invites_an_admin(api, conn, cast):
    out = invite(api("owner"), cast.team, "deputy@example.test", "admin")
    assert scalar(conn, "select role::text from public.invitations where id = %s", (out["invitation_id"],)) == \
        "admin", "an owner may invite admins"


def test_admin_cannot_invite_an_admin(api, conn, cast):
    refused(conn, api("admin"), "invite_member", "42501", "only owners", org_id=cast.team,
            email="deputy@example.test", role="admin")


def test_nobody_is_invited_as_owner(api, conn, cast):
    refused(conn, api("owner"), "invite_member", "PT400", "promote", org_id=cast.team,
            email="boss@example.test", role="owner")


@pytest.mark.parametrize("who", ["member", "outsider", "platform_admin"])
def test_non_admins_cannot_invite(api, conn, cast, who):
    refused(conn, api(who), "invite_member", "42501", org_id=cast.team, email="friend@example.test", role="member")


def test_banned_admin_cannot_invite(conn, cast, suspended):
    refused(conn, as_user(conn, suspended), "invite_member", "42501", org_id=cast.team,
            email="friend@example.test", role="member")


def test_anon_cannot_invite(api, conn, cast):
    refused(conn, api("anon"), "invite_member", "42501", org_id=cast.team, email="friend@example.test",
            role="member")


def test_personal_org_takes_no_invitations(api, conn, cast):
    refused(conn, api("owner"), "invite_member", "PT400", "personal", org_id=personal_org(conn, cast.owner),
            email="friend@example.test", role="member")


# Inviting an existing member's address is answered like any other address (no membership
# oracle): tests/tenancy/test_hardening_invitations.py; accepting it is refused (below).


def test_invite_to_unknown_org(api, conn):
    refused(conn, api("owner"), "invite_member", "PT404", "not found", org_id=uuid.uuid4(),
            email="friend@example.test", role="member")


@pytest.mark.parametrize("email", ["not-an-email", "two@@example.test", "spaced out@example.test", "", None])
def test_invite_rejects_bad_email(api, conn, cast, email):
    refused(conn, api("owner"), "invite_member", "PT400", "email", org_id=cast.team, email=email, role="member")


def test_reinvite_replaces_the_open_invitation(api, conn, cast):
    first = invite(api("owner"), cast.team, "again@example.test")
    second = invite(api("admin"), cast.team, "AGAIN@example.test")
    open_ids = [r[0] for r in conn.execute(
        "select id from public.invitations where org_id = %s and email = 'again@example.test' "
        "and accepted_at is null", (cast.team,))]
    assert open_ids == [second["invitation_id"]], "one open invitation per address: the new one replaced the old"
    invitee = make_user(conn, "again", email="again@example.test")
    refused(conn, as_user(conn, invitee), "accept_invitation", "PT404", token=first["token"])
    assert rpc(as_user(conn, invitee), "accept_invitation", token=second["token"]), "the new token works"


# Section - accept_invitation

def test_accept_invitation_joins_with_the_invited_role(api, conn, cast):
    out = invite(api("owner"), cast.team, "Joiner@Example.test", "admin")
    joiner = make_user(conn, "joiner", email="joiner@example.test")
    rows = rpc(as_user(conn, joiner), "accept_invitation", token=out["token"])
    assert rows == [{"accept_invitation": cast.team}], "returns the organization joined"
    assert role_in(conn, cast.team, joiner) == "admin", "joined with the invited role"
    accepted_at, accepted_by = conn.execute("select accepted_at, accepted_by from public.invitations where id = %s",
                                            (out["invitation_id"],)).fetchone()
    assert accepted_at is not None and accepted_by == joiner.id, "the invitation is marked used by the joiner"
    seen = as_user(conn, joiner)("select id from public.organizations where id = %s", (cast.team,))
    assert len(seen) == 1, "the new member reads the organization"


def test_accept_matches_address_case_insensitively(api, conn, cast):
    out = invite(api("owner"), cast.team, "casey@example.test")
    casey = make_user(conn, "casey", email="Casey@Example.TEST")
    rpc(as_user(conn, casey), "accept_invitation", token=out["token"])
    assert role_in(conn, cast.team, casey) == "member", "the address matches whatever its case"


def test_accept_refuses_another_address(api, conn, cast):
    out = invite(api("owner"), cast.team, "intended@example.test")
    refused(conn, api("outsider"), "accept_invitation", "42501", "another address", token=out["token"])
    assert role_in(conn, cast.team, cast.outsider) is None, "the outsider did not join"


def test_accept_refuses_a_used_invitation(api, conn, cast):
    out = invite(api("owner"), cast.team, "once@example.test")
    once = make_user(conn, "once", email="once@example.test")
    rpc(as_user(conn, once), "accept_invitation", token=out["token"])
    refused(conn, as_user(conn, once), "accept_invitation", "PT409", "already been used", token=out["token"])


def test_accept_refuses_an_expired_invitation(api, conn, cast):
    out = invite(api("owner"), cast.team, "late@example.test")
    conn.execute("update public.invitations set expires_at = now() - interval '1 second' where id = %s",
                 (out["invitation_id"],))
    late = make_user(conn, "late", email="late@example.test")
    refused(conn, as_user(conn, late), "accept_invitation", "PT410", "expired", token=out["token"])
    assert role_in(conn, cast.team, late) is None, "did not join"


@pytest.mark.parametrize("token", ["0" * 64, "", None])
def test_accept_unknown_token(api, conn, token):
    refused(conn, api("outsider"), "accept_invitation", "PT404", "not found", token=token)


def test_accept_when_already_a_member(api, conn, cast):
    out = invite(api("owner"), cast.team, "twice@example.test")
    twice = make_user(conn, "twice", email="twice@example.test")
    add_member(conn, cast.team, twice, "member")
    refused(conn, as_user(conn, twice), "accept_invitation", "PT409", "already a member", token=out["token"])


def test_banned_invitee_cannot_accept(api, conn, cast):
    out = invite(api("owner"), cast.team, "shady@example.test")
    shady = make_user(conn, "shady", email="shady@example.test")
    conn.execute("update public.profiles set role = 'banned' where id = %s", (shady.id,))
    refused(conn, as_user(conn, shady), "accept_invitation", "42501", "banned", token=out["token"])


def test_anon_cannot_accept(api, conn, cast):
    out = invite(api("owner"), cast.team, "anon@example.test")
    refused(conn, api("anon"), "accept_invitation", "42501", token=out["token"])


# Section - update_member_role

def test_member_cannot_raise_own_role(api, conn, cast):
    refused(conn, api("member"), "update_member_role", "42501", org_id=cast.team, user_id=cast.member.id,
            role="admin")


def test_admin_cannot_make_self_owner(api, conn, cast):
    refused(conn, api("admin"), "update_member_role", "42501", org_id=cast.team, user_id=cast.admin.id,
            role="owner")


def test_admin_promotes_a_member_to_admin(api, conn, cast):
    rows = rpc(api("admin"), "update_member_role", org_id=cast.team, user_id=cast.member.id, role="admin")
    assert [(r["user_id"], r["role"]) for r in rows] == [(cast.member.id, "admin")], "returns the new membership"
    assert role_in(conn, cast.team, cast.member) == "admin", "the member is now an admin"


def test_admin_demotes_another_admin(api, conn, cast):
    rpc(api("admin"), "update_member_role", org_id=cast.team, user_id=cast.banned.id, role="member")
    assert role_in(conn, cast.team, cast.banned) == "member", "admins manage admins and members"


def test_admin_cannot_demote_the_owner(api, conn, cast):
    refused(conn, api("admin"), "update_member_role", "42501", "only owners", org_id=cast.team,
            user_id=cast.owner.id, role="member")


def test_admin_cannot_make_an_owner(api, conn, cast):
    refused(conn, api("admin"), "update_member_role", "42501", "only owners", org_id=cast.team,
            user_id=cast.member.id, role="owner")


def test_owner_makes_another_owner_then_steps_down(api, conn, cast):
    rpc(api("owner"), "update_member_role", org_id=cast.team, user_id=cast.admin.id, role="owner")
    assert role_in(conn, cast.team, cast.admin) == "owner", "owners may make owners"
    rpc(api("owner"), "update_member_role", org_id=cast.team, user_id=cast.owner.id, role="admin")
    assert role_in(conn, cast.team, cast.owner) == "admin", "with another owner in place, an owner may step down"


def test_owner_demotes_a_co_owner(api, conn, cast):
    add_member(conn, cast.team, cast.outsider, "owner")
    rpc(api("owner"), "update_member_role", org_id=cast.team, user_id=cast.outsider.id, role="member")
    assert role_in(conn, cast.team, cast.outsider) == "member", "owners change owners"


def test_last_owner_cannot_be_demoted(api, conn, cast):
    refused(conn, api("owner"), "update_member_role", "PT409", "at least one owner", org_id=cast.team,
            user_id=cast.owner.id, role="admin")


def test_update_role_of_unknown_user(api, conn, cast):
    refused(conn, api("owner"), "update_member_role", "PT404", "not a member", org_id=cast.team,
            user_id=cast.outsider.id, role="admin")


def test_update_role_in_unknown_org(api, conn, cast):
    refused(conn, api("owner"), "update_member_role", "PT404", "not found", org_id=uuid.uuid4(),
            user_id=cast.member.id, role="admin")


def test_update_role_requires_a_role(api, conn, cast):
    refused(conn, api("owner"), "update_member_role", "PT400", "role", org_id=cast.team, user_id=cast.member.id,
            role=None)


@pytest.mark.parametrize("who", ["outsider", "platform_admin", "banned"])
def test_non_members_cannot_change_roles(api, conn, cast, who):
    refused(conn, api(who), "update_member_role", "42501", org_id=cast.team, user_id=cast.member.id, role="admin")


def test_anon_cannot_change_roles(api, conn, cast):
    refused(conn, api("anon"), "update_member_role", "42501", org_id=cast.team, user_id=cast.member.id,
            role="admin")


# Section - remove_member

def test_admin_removes_a_member(api, conn, cast):
    rpc(api("admin"), "remove_member", org_id=cast.team, user_id=cast.member.id)
    assert role_in(conn, cast.team, cast.member) is None, "the member is gone"
    assert as_user(conn, cast.member)("select id from public.organizations where id = %s", (cast.team,)) == [], \
        "and no longer reads the organization"


def test_owner_removes_an_admin(api, conn, cast):
    rpc(api("owner"), "remove_member", org_id=cast.team, user_id=cast.admin.id)
    assert role_in(conn, cast.team, cast.admin) is None, "owners remove admins"


def test_owner_removes_a_co_owner(api, conn, cast):
    add_member(conn, cast.team, cast.outsider, "owner")
    rpc(api("owner"), "remove_member", org_id=cast.team, user_id=cast.outsider.id)
    assert role_in(conn, cast.team, cast.outsider) is None, "owners remove other owners"


def test_admin_cannot_remove_the_owner(api, conn, cast):
    refused(conn, api("admin"), "remove_member", "42501", "only owners", org_id=cast.team, user_id=cast.owner.id)


def test_last_owner_cannot_be_removed(api, conn, cast):
    refused(conn, api("owner"), "remove_member", "PT409", "at least one owner", org_id=cast.team,
            user_id=cast.owner.id)


def test_personal_org_owner_cannot_be_removed(api, conn, cast):
    refused(conn, api("owner"), "remove_member", "PT400", "personal", org_id=personal_org(conn, cast.owner),
            user_id=cast.owner.id)


def test_remove_unknown_member(api, conn, cast):
    refused(conn, api("owner"), "remove_member", "PT404", "not a member", org_id=cast.team,
            user_id=cast.outsider.id)


@pytest.mark.parametrize("who", ["member", "outsider", "platform_admin", "banned", "anon"])
def test_non_admins_cannot_remove(api, conn, cast, who):
    refused(conn, api(who), "remove_member", "42501", org_id=cast.team, user_id=cast.member.id)


# Section - leave_organization

def test_member_leaves(api, conn, cast):
    rpc(api("member"), "leave_organization", org_id=cast.team)
    assert role_in(conn, cast.team, cast.member) is None, "the member left"
    assert role_in(conn, cast.team, cast.owner) == "owner", "nobody else was touched"


def test_co_owner_leaves(api, conn, cast):
    add_member(conn, cast.team, cast.outsider, "owner")
    rpc(api("owner"), "leave_organization", org_id=cast.team)
    assert role_in(conn, cast.team, cast.owner) is None, "an owner leaves when another owner stays"


def test_personal_org_cannot_be_left(api, conn, cast):
    refused(conn, api("member"), "leave_organization", "PT400", "personal", org_id=personal_org(conn, cast.member))


def test_last_owner_cannot_leave(api, conn, cast):
    refused(conn, api("owner"), "leave_organization", "PT409", "at least one owner", org_id=cast.team)


@pytest.mark.parametrize("who", ["outsider", "platform_admin"])
def test_non_member_cannot_leave(api, conn, cast, who):
    refused(conn, api(who), "leave_organization", "42501", org_id=cast.team)


def test_leave_unknown_org(api, conn):
    refused(conn, api("member"), "leave_organization", "PT404", "not found", org_id=uuid.uuid4())


def test_banned_member_cannot_leave(api, conn, cast):
    refused(conn, api("banned"), "leave_organization", "42501", "banned", org_id=cast.team)


def test_anon_cannot_leave(api, conn, cast):
    refused(conn, api("anon"), "leave_organization", "42501", org_id=cast.team)


# Section - grants

RPCS = ["create_organization(text, text)", "invite_member(uuid, text, public.member_role)",
        "accept_invitation(text)", "update_member_role(uuid, uuid, public.member_role)",
        "remove_member(uuid, uuid)", "leave_organization(uuid)"]


@pytest.mark.parametrize("signature", RPCS)
def test_rpcs_are_for_signed_in_users_only(conn, signature):
    grants = {role: scalar(conn, "select has_function_privilege(%s, %s, 'execute')", (role, f"public.{signature}"))
              for role in ("anon", "authenticated", "service_role")}
    assert grants == {"anon": False, "authenticated": True, "service_role": True}, \
        f"{signature}: executable by authenticated and service_role, not anon"


# Section - concurrency: the last-owner rule holds across transactions

@pytest.fixture
def two_owners(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        a, b = make_user(c, "owner-a"), make_user(c, "owner-b")
        team = make_team(c, a, owner2=b)
    return fresh_dsn, a, b, team


def test_two_owners_leaving_at_once_leave_one_behind(two_owners):
    dsn, a, b, team = two_owners
    second = race(dsn, lambda c: rpc(as_user(c, a), "leave_organization", org_id=team),
                  lambda c: rpc(as_user(c, b), "leave_organization", org_id=team))
    assert second == "PT409", "the second owner to leave is told the organization needs an owner"
    assert owners(dsn, team) == 1, "the organization kept an owner"


def test_two_owners_demoting_each_other_at_once_leave_one_behind(two_owners):
    dsn, a, b, team = two_owners
    second = race(dsn, lambda c: rpc(as_user(c, a), "update_member_role", org_id=team, user_id=b.id, role="admin"),
                  lambda c: rpc(as_user(c, b), "update_member_role", org_id=team, user_id=a.id, role="admin"))
    assert second == "PT409", "the second demotion is refused: it would leave no owner"
    assert owners(dsn, team) == 1, "the organization kept an owner"
