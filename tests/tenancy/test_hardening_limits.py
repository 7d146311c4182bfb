"""Finding 5 of issue 11: what one person can create is limited, each limit set in
private.app_settings (defaults below), enforced where the write happens (the RPCs; a
trigger for projects, which admins insert through PostgREST) and refused with PT429 and a
message naming the limit. Each is tested at the boundary with the limit set low."""
from __future__ import annotations

import pytest

from tests.support.personas import add_member, make_team, make_user
from tests.support.pg import as_user, raises_sqlstate, scalar, snapshot

DEFAULTS = {"max_team_orgs_owned_per_user": "10", "max_open_invitations_per_org": "50",
            "max_active_keys_per_org": "50", "max_projects_per_org": "100"}


def set_limit(conn, name: str, value: int) -> None:
    conn.execute("update private.app_settings set value = %s where key = %s", (str(value), name))


def test_limits_have_defaults_in_app_settings(conn):
    rows = dict(conn.execute("select key, value from private.app_settings where key = any(%s)",
                             (list(DEFAULTS),)).fetchall())
    assert rows == DEFAULTS


def test_team_orgs_owned_per_person(conn):
    set_limit(conn, "max_team_orgs_owned_per_user", 3)
    alice = make_user(conn, "alice")
    me = as_user(conn, alice)
    make_team(conn, alice, allowance=0)  # owned already: counts
    for n in range(2):  # up to the limit
        me("select public.create_organization(name := %s, slug := %s)", (f"t{n}", f"limit-t{n}-{alice.id.hex[:6]}"))
    before = snapshot(conn, "public.organizations")
    with raises_sqlstate("PT429", "max_team_orgs_owned_per_user"):
        me("select public.create_organization(name := 'one more', slug := %s)", (f"limit-x-{alice.id.hex[:6]}",))
    assert snapshot(conn, "public.organizations") == before, "nothing was created"


def test_a_member_role_in_other_teams_does_not_count(conn):
    set_limit(conn, "max_team_orgs_owned_per_user", 1)
    bob = make_user(conn, "bob")
    add_member(conn, make_team(conn, make_user(conn, "other"), allowance=0), bob, "admin")
    as_user(conn, bob)("select public.create_organization(name := 'mine', slug := %s)", (f"mine-{bob.id.hex[:8]}",))


@pytest.fixture
def team(conn):
    owner = make_user(conn, "owner")
    return owner, make_team(conn, owner, allowance=0)


def invite(conn, owner, org, n):
    return as_user(conn, owner)("select * from public.invite_member(org_id := %s, email := %s, role := 'member')",
                                (org, f"guest{n}@example.test"))


def test_open_invitations_per_org(conn, team):
    owner, org = team
    set_limit(conn, "max_open_invitations_per_org", 3)
    for n in range(3):
        invite(conn, owner, org, n)
    invite(conn, owner, org, 1)  # re-inviting an address replaces its open invitation
    before = snapshot(conn, "public.invitations")
    with raises_sqlstate("PT429", "max_open_invitations_per_org"):
        invite(conn, owner, org, 99)
    assert snapshot(conn, "public.invitations") == before, "nothing changed"
    conn.execute("update public.invitations set expires_at = now() - interval '1 second' "
                 "where org_id = %s and email = 'guest0@example.test'", (org,))
    invite(conn, owner, org, 99)  # an expired invitation no longer holds a place


def new_key(conn, owner, org):
    return as_user(conn, owner).one("select public.create_api_key(org_id := %s, name := 'k') as k", (org,))["k"]


def test_active_keys_per_org(conn, team):
    owner, org = team
    set_limit(conn, "max_active_keys_per_org", 2)
    first = new_key(conn, owner, org)
    new_key(conn, owner, org)
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT429", "max_active_keys_per_org"):
        new_key(conn, owner, org)
    assert snapshot(conn, "public.api_keys") == before, "no key was made"
    as_user(conn, owner)("select public.revoke_api_key(id := %s)", (first["id"],))
    new_key(conn, owner, org)  # a revoked key no longer counts


def add_project(conn, owner, org, name):
    return as_user(conn, owner).count("insert into public.projects (org_id, name) values (%s, %s) returning id",
                                      (org, name))


def test_projects_per_org_through_postgrest(conn, team):
    owner, org = team
    set_limit(conn, "max_projects_per_org", 2)
    assert add_project(conn, owner, org, "one") == 1
    assert add_project(conn, owner, org, "two") == 1
    before = snapshot(conn, "public.projects")
    with raises_sqlstate("PT429", "max_projects_per_org"):
        add_project(conn, owner, org, "three")
    assert snapshot(conn, "public.projects") == before, "no project was made"
    other_owner = make_user(conn, "other")
    assert add_project(conn, other_owner, make_team(conn, other_owner, allowance=0), "three") == 1, \
        "the limit is per organization"


def test_the_message_names_the_limit_and_its_value(conn, team):
    owner, org = team
    set_limit(conn, "max_projects_per_org", 0)
    with raises_sqlstate("PT429", "an organization may have at most 0 projects"):
        add_project(conn, owner, org, "none allowed")
    assert scalar(conn, "select count(*) from public.projects where org_id = %s", (org,)) == 0
