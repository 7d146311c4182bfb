"""Deleting an auth user (as Supabase Auth does, as superuser): the profile, memberships
and personal organization go with them; a team organization they solely own passes to its
longest-standing admin, and without one the delete is refused."""
from __future__ import annotations

import psycopg
import pytest

from tests.support.personas import add_member, add_project, make_team, make_user, owners, personal_org
from tests.support.pg import as_user, race, raises_sqlstate, scalar, snapshot

TABLES = ("auth.users", "public.profiles", "public.organizations", "public.organization_members",
          "public.invitations", "public.projects")


def delete_user(conn, person) -> None:
    conn.execute("delete from auth.users where id = %s", (person.id,))


def role_in(conn, org_id, person) -> str | None:
    return scalar(conn, "select role::text from public.organization_members where org_id = %s and user_id = %s",
                  (org_id, person.id))


def set_joined(conn, org_id, person, when: str) -> None:
    conn.execute("update public.organization_members set created_at = %s where org_id = %s and user_id = %s",
                 (when, org_id, person.id))


def test_deleting_a_member_cascades(conn, cast):
    mine = personal_org(conn, cast.member)
    own_project = add_project(conn, mine, "Mine", cast.member)
    team_project = add_project(conn, cast.team, "Theirs", cast.member)
    delete_user(conn, cast.member)
    assert scalar(conn, "select count(*) from public.profiles where id = %s", (cast.member.id,)) == 0, \
        "the profile is gone"
    assert scalar(conn, "select count(*) from public.organization_members where user_id = %s",
                  (cast.member.id,)) == 0, "every membership is gone"
    assert scalar(conn, "select count(*) from public.organizations where id = %s", (mine,)) == 0, \
        "the personal organization is gone"
    assert scalar(conn, "select count(*) from public.projects where id = %s", (own_project,)) == 0, \
        "with its projects"
    assert scalar(conn, "select created_by from public.projects where id = %s", (team_project,)) is None, \
        "a team project they created stays, unattributed"
    assert role_in(conn, cast.team, cast.owner) == "owner", "the team org and its owner are untouched"


def test_deleting_an_inviter_keeps_their_invitations(conn, cast):
    conn.execute("update public.invitations set invited_by = %s where id = %s", (cast.admin.id, cast.invitation))
    delete_user(conn, cast.admin)
    row = conn.execute("select invited_by from public.invitations where id = %s", (cast.invitation,)).fetchone()
    assert row == (None,), "the invitation stays open, no longer attributed"


def test_sole_owner_hands_over_to_longest_standing_admin(conn, cast):
    newer = make_user(conn, "newer-admin")
    add_member(conn, cast.team, newer, "admin")
    set_joined(conn, cast.team, cast.admin, "2026-01-01")
    set_joined(conn, cast.team, cast.banned, "2026-02-01")
    set_joined(conn, cast.team, newer, "2026-03-01")
    set_joined(conn, cast.team, cast.member, "2025-01-01")  # longer-standing, but not an admin
    delete_user(conn, cast.owner)
    assert role_in(conn, cast.team, cast.admin) == "owner", "the longest-standing admin becomes owner"
    assert role_in(conn, cast.team, newer) == "admin", "the other admins stay admins"
    assert role_in(conn, cast.team, cast.member) == "member", "members are not considered"
    assert role_in(conn, cast.team, cast.owner) is None, "the deleted owner's membership is gone"
    assert scalar(conn, "select count(*) from public.organizations where id = %s", (cast.team,)) == 1, \
        "the team organization survives"


def test_co_owned_org_keeps_its_other_owner(conn, cast):
    add_member(conn, cast.team, cast.outsider, "owner")
    delete_user(conn, cast.owner)
    assert role_in(conn, cast.team, cast.outsider) == "owner", "the other owner remains"
    assert role_in(conn, cast.team, cast.admin) == "admin", "no admin is promoted when an owner remains"


def test_each_solely_owned_org_gets_its_own_heir(conn, cast):
    second = make_team(conn, cast.owner, admin=cast.member)
    set_joined(conn, cast.team, cast.banned, "2030-01-01")  # the team's other admin joined later
    delete_user(conn, cast.owner)
    assert role_in(conn, cast.team, cast.admin) == "owner", "the first team passes to its admin"
    assert role_in(conn, second, cast.member) == "owner", "the second team passes to its own admin"


@pytest.mark.parametrize("others", ["members only", "nobody"])
def test_sole_owner_without_an_admin_cannot_be_deleted(conn, others):
    owner = make_user(conn, "lonely-owner")
    extra = {"member": make_user(conn, "just-member")} if others == "members only" else {}
    team = make_team(conn, owner, slug="lonely-team", **extra)
    before = snapshot(conn, *TABLES)
    with raises_sqlstate("PT409", "transfer ownership"):
        with conn.transaction():
            delete_user(conn, owner)
    assert snapshot(conn, *TABLES) == before, "the refused delete changed nothing"
    assert role_in(conn, team, owner) == "owner", "the owner and their organization are still there"


def test_refusal_names_the_organization(conn):
    owner = make_user(conn, "named-owner")
    make_team(conn, owner, slug="named-team")
    with raises_sqlstate("PT409", '"Named-Team"'):
        with conn.transaction():
            delete_user(conn, owner)


def test_user_deletion_after_handing_over_leaves_no_ownerless_org(conn, cast):
    delete_user(conn, cast.owner)
    ownerless = scalar(conn, "select count(*) from public.organizations o where not exists "
                             "(select 1 from public.organization_members m where m.org_id = o.id and m.role = 'owner')")
    assert ownerless == 0, "every organization still has an owner"


# Section - concurrency: a deletion and a co-owner leaving at the same time

@pytest.fixture
def co_owned(fresh_dsn):
    """`a` and `b` own a team together; `heir` is its admin. Committed, in a fresh database."""
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        a, b, heir = make_user(c, "owner-a"), make_user(c, "owner-b"), make_user(c, "heir")
        team = make_team(c, a, owner2=b, admin=heir)
    return fresh_dsn, a, b, heir, team


def leave(person, team):
    return lambda c: as_user(c, person)("select * from public.leave_organization(org_id := %s)", (team,))


def test_deleting_an_owner_while_the_co_owner_leaves_hands_over(co_owned):
    dsn, a, b, heir, team = co_owned
    second = race(dsn, leave(b, team), lambda c: delete_user(c, a))
    assert second is None, "the deletion goes ahead once the co-owner has left"
    assert owners(dsn, team) == 1, "the organization kept an owner"
    with psycopg.connect(dsn) as c:
        assert role_in(c, team, heir) == "owner", "the admin took over from the deleted sole owner"


def test_co_owner_cannot_leave_while_the_other_owner_is_deleted(co_owned):
    dsn, a, b, heir, team = co_owned
    second = race(dsn, lambda c: delete_user(c, a), leave(b, team))
    assert second == "PT409", "the co-owner is now the last owner and cannot leave"
    assert owners(dsn, team) == 1, "the organization kept an owner"
    with psycopg.connect(dsn) as c:
        assert role_in(c, team, b) == "owner", "the co-owner is still its owner"
        assert role_in(c, team, heir) == "admin", "and nobody needed promoting"


def test_a_banned_admin_never_inherits(conn, cast):
    """Only an active admin takes over; the banned admin who joined first is passed over."""
    set_joined(conn, cast.team, cast.banned, "2020-01-01")
    set_joined(conn, cast.team, cast.admin, "2026-01-01")
    delete_user(conn, cast.owner)
    assert role_in(conn, cast.team, cast.admin) == "owner", "the active admin inherits"
    assert role_in(conn, cast.team, cast.banned) == "admin", "the banned admin stays admin"


def test_lone_owner_deletes_the_team_then_their_account(conn):
    owner = make_user(conn, "solo-owner")
    team = make_team(conn, owner, slug="solo-team")
    with raises_sqlstate("PT409", "transfer ownership"):
        with conn.transaction():
            delete_user(conn, owner)
    as_user(conn, owner)("select public.delete_organization(org_id := %s)", (team,))
    assert scalar(conn, "select count(*) from public.organizations where id = %s", (team,)) == 0, "team deleted"
    delete_user(conn, owner)
    assert scalar(conn, "select count(*) from public.profiles where id = %s", (owner.id,)) == 0, "then the account goes"


def test_delete_organization_rules(conn, cast):
    before = snapshot(conn, *TABLES)
    for person in (cast.admin, cast.member, cast.outsider):
        with raises_sqlstate("42501"):
            as_user(conn, person)("select public.delete_organization(org_id := %s)", (cast.team,))
    with raises_sqlstate("PT400", "personal"):
        as_user(conn, cast.owner)("select public.delete_organization(org_id := %s)", (personal_org(conn, cast.owner),))
    with raises_sqlstate("PT404"):
        as_user(conn, cast.owner)("select public.delete_organization(org_id := gen_random_uuid())")
    assert snapshot(conn, *TABLES) == before, "refusals changed nothing"
