"""Finding 4 of issue 11 (and the membership oracle of finding 6): an invitation is
checked again at acceptance. Its inviter must still be an active member with the role to
send it (owner for an admin invitation, admin for a member invitation); otherwise
accept_invitation answers PT410 "invitation is void" and the invitation is void for good.
Inviting an existing member's address is answered like any other address."""
from __future__ import annotations

import pytest

from tests.support.personas import BAN_KINDS, add_member, ban, make_team, make_user
from tests.support.pg import as_user, raises_sqlstate, scalar, snapshot


@pytest.fixture
def org(conn):
    owner, admin, invitee = make_user(conn, "owner"), make_user(conn, "admin"), make_user(conn, "invitee")
    team = make_team(conn, owner)
    add_member(conn, team, admin, "admin")
    return owner, admin, invitee, team


def invite(conn, by, team, email, role="member") -> dict:
    return as_user(conn, by).one("select * from public.invite_member(org_id := %s, email := %s, role := %s)",
                                 (team, email, role))


def accept(conn, person, token):
    return as_user(conn, person).one("select public.accept_invitation(token := %s) as org", (token,))


def refused_as_void(conn, person, token, team):
    before = snapshot(conn, "public.organization_members")
    with raises_sqlstate("PT410", "invitation is void"):
        accept(conn, person, token)
    assert snapshot(conn, "public.organization_members") == before, "nobody joined"
    assert scalar(conn, "select count(*) from public.organization_members where org_id = %s and user_id = %s",
                  (team, person.id)) == 0


def test_invitation_of_an_admin_still_admin_is_accepted(conn, org):
    owner, admin, invitee, team = org
    out = invite(conn, admin, team, invitee.email)
    assert accept(conn, invitee, out["token"])["org"] == team


def test_invitation_of_a_demoted_admin_is_void(conn, org):
    owner, admin, invitee, team = org
    out = invite(conn, admin, team, invitee.email)
    as_user(conn, owner)("select public.update_member_role(org_id := %s, user_id := %s, role := 'member')",
                         (team, admin.id))
    refused_as_void(conn, invitee, out["token"], team)
    assert scalar(conn, "select voided_at is not null from public.invitations where id = %s",
                  (out["invitation_id"],)), "the invitation is marked void"
    as_user(conn, owner)("select public.update_member_role(org_id := %s, user_id := %s, role := 'admin')",
                         (team, admin.id))
    refused_as_void(conn, invitee, out["token"], team)  # void for good, even once the role is back


def test_admin_invitation_of_a_demoted_owner_is_void(conn, org):
    owner, admin, invitee, team = org
    co_owner = make_user(conn, "co-owner")
    add_member(conn, team, co_owner, "owner")
    as_admin = invite(conn, co_owner, team, invitee.email, "admin")
    as_member = invite(conn, co_owner, team, "someone-else@example.test", "member")
    as_user(conn, owner)("select public.update_member_role(org_id := %s, user_id := %s, role := 'admin')",
                         (team, co_owner.id))
    refused_as_void(conn, invitee, as_admin["token"], team)
    assert scalar(conn, "select voided_at from public.invitations where id = %s", (as_member["invitation_id"],)) \
        is None, "an admin may still invite members: that invitation stands"


def test_invitation_of_a_removed_inviter_is_void(conn, org):
    owner, admin, invitee, team = org
    out = invite(conn, admin, team, invitee.email)
    as_user(conn, owner)("select public.remove_member(org_id := %s, user_id := %s)", (team, admin.id))
    refused_as_void(conn, invitee, out["token"], team)


def test_invitation_of_an_inviter_who_left_is_void(conn, org):
    owner, admin, invitee, team = org
    out = invite(conn, admin, team, invitee.email)
    as_user(conn, admin)("select public.leave_organization(org_id := %s)", (team,))
    refused_as_void(conn, invitee, out["token"], team)


@pytest.mark.parametrize("how", BAN_KINDS)
def test_invitation_of_a_banned_inviter_is_void(conn, org, how):
    owner, admin, invitee, team = org
    out = invite(conn, admin, team, invitee.email)
    ban(conn, admin, how)
    refused_as_void(conn, invitee, out["token"], team)


def test_invitation_of_a_deleted_inviter_is_void(conn, org):
    owner, admin, invitee, team = org
    out = invite(conn, admin, team, invitee.email)
    conn.execute("delete from auth.users where id = %s", (admin.id,))
    refused_as_void(conn, invitee, out["token"], team)


def test_inviting_an_existing_member_answers_like_a_new_address(conn, org):
    owner, admin, invitee, team = org
    member = make_user(conn, "member")
    add_member(conn, team, member, "member")
    known = invite(conn, admin, team, member.email.upper())
    unknown = invite(conn, admin, team, "nobody-yet@example.test")
    assert set(known) == set(unknown) == {"invitation_id", "token", "expires_at"}, "the same answer"
    assert len(known["token"]) == len(unknown["token"]) == 64
    with raises_sqlstate("PT409", "already a member"):
        accept(conn, member, known["token"])  # the member, not the inviter, learns it
