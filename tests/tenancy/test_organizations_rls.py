"""organizations and organization_members: members read their organizations and who is
in them; admins and owners rename (name and slug only); nobody but the service role
creates or deletes organizations or writes memberships directly (that is what the
membership RPCs are for)."""
from __future__ import annotations

import pytest

from tests.support.personas import PERSONAS, personal_org
from tests.support.pg import as_user, raises_sqlstate, scalar, snapshot

ORGS = "public.organizations"
MEMBERS = "public.organization_members"
IN_TEAM = {"owner": True, "admin": True, "member": True, "outsider": False, "platform_admin": False, "banned": False}
ADMIN_OF_TEAM = {"owner": True, "admin": True, "member": False, "outsider": False, "platform_admin": False,
                 "banned": False}


def org_name(conn, org_id):
    return scalar(conn, "select name from public.organizations where id = %s", (org_id,))


# Section - organizations: select

@pytest.mark.parametrize("who", PERSONAS)
def test_team_org_is_viewable_by_its_members_only(api, cast, who):
    rows = api(who)("select id, name, slug, plan_id from public.organizations where id = %s", (cast.team,))
    expected = 1 if IN_TEAM[who] else 0
    assert len(rows) == expected, f"{who} {'sees' if expected else 'must not see'} the team organization"


@pytest.mark.parametrize("who", ["owner", "admin", "member", "outsider", "platform_admin"])
def test_user_sees_exactly_their_own_organizations(api, conn, cast, who):
    me = getattr(cast, who)
    rows = api(who)("select id from public.organizations")
    expected = {r[0] for r in conn.execute(
        "select org_id from public.organization_members where user_id = %s", (me.id,))}
    assert {r["id"] for r in rows} == expected, f"{who} sees their personal org and team orgs, nothing else"
    assert personal_org(conn, me) in expected, f"{who} has a personal organization"


def test_suspended_user_sees_no_organization(conn, suspended):
    rows = as_user(conn, suspended)("select id from public.organizations")
    assert rows == [], "a banned/inactive user sees no organization, not even their own"


def test_anon_cannot_read_organizations(api):
    with raises_sqlstate("42501"):
        api("anon")("select id from public.organizations")


def test_service_role_reads_every_organization(api, conn):
    rows = api("service")("select id from public.organizations")
    assert len(rows) == scalar(conn, "select count(*) from public.organizations"), "the service role reads all"


# Section - organizations: insert

@pytest.mark.parametrize("who", PERSONAS + ("anon",))
def test_nobody_inserts_organizations_directly(api, conn, who):
    before = snapshot(conn, ORGS)
    with raises_sqlstate("42501"):
        api(who)("insert into public.organizations (name, slug) values ('Direct', 'direct-insert')")
    assert snapshot(conn, ORGS) == before, f"{who}'s refused insert changed nothing (use create_organization)"


def test_service_role_inserts_an_organization(api, conn):
    n = api("service").count(
        "insert into public.organizations (name, slug, plan_id) values ('Svc', 'svc-made', 'pro') returning id")
    assert n == 1, "the service role inserts organizations"
    assert scalar(conn, "select plan_id from public.organizations where slug = 'svc-made'") == "pro", "row is there"


# Section - organizations: update

@pytest.mark.parametrize("who", PERSONAS)
def test_team_org_is_renamed_by_admins_and_owners_only(api, conn, cast, who):
    n = api(who).count("update public.organizations set name = 'Renamed', slug = 'renamed-team' "
                       "where id = %s returning id", (cast.team,))
    if ADMIN_OF_TEAM[who]:
        assert n == 1, f"{who} renames the team organization"
        assert conn.execute("select name, slug from public.organizations where id = %s",
                            (cast.team,)).fetchone() == ("Renamed", "renamed-team"), "name and slug changed"
    else:
        assert n == 0, f"{who} changes no row (USING denial)"
        assert org_name(conn, cast.team) != "Renamed", f"{who} left the name unchanged"


def test_suspended_admin_cannot_rename(conn, cast, suspended):
    n = as_user(conn, suspended).count("update public.organizations set name = 'Nope' where id = %s returning id",
                                       (cast.team,))
    assert n == 0, "a banned/inactive admin changes no row"
    assert org_name(conn, cast.team) != "Nope", "name unchanged"


def test_owner_renames_their_personal_org(api, conn, cast):
    mine = personal_org(conn, cast.member)
    n = api("member").count("update public.organizations set name = 'My Space' where id = %s returning id", (mine,))
    assert n == 1, "a user owns (and may rename) their personal organization"
    assert org_name(conn, mine) == "My Space", "renamed"


@pytest.mark.parametrize("column, value", [("plan_id", "enterprise"), ("personal", True),
                                           ("stripe_customer_id", "cus_free"), ("created_by", None)])
def test_owner_cannot_update_billing_or_identity_columns(api, conn, cast, column, value):
    before = snapshot(conn, ORGS)
    with raises_sqlstate("42501"):
        api("owner")(f"update public.organizations set {column} = %s where id = %s", (value, cast.team))
    assert snapshot(conn, ORGS) == before, f"a refused update of {column} changed nothing"


def test_team_org_cannot_take_a_personal_slug(api, conn, cast):
    before = snapshot(conn, ORGS)
    with raises_sqlstate("23514"):
        api("owner")("update public.organizations set slug = 'personal-squatted' where id = %s", (cast.team,))
    assert snapshot(conn, ORGS) == before, "personal-* slugs are for personal organizations only"


def test_anon_cannot_update_organizations(api, conn, cast):
    before = snapshot(conn, ORGS)
    with raises_sqlstate("42501"):
        api("anon")("update public.organizations set name = 'Anon' where id = %s", (cast.team,))
    assert snapshot(conn, ORGS) == before, "anon's refused update changed nothing"


def test_service_role_changes_the_plan(api, conn, cast):
    n = api("service").count("update public.organizations set plan_id = 'pro' where id = %s returning id",
                             (cast.team,))
    assert n == 1, "the service role (billing sync) changes the plan"
    assert scalar(conn, "select plan_id from public.organizations where id = %s", (cast.team,)) == "pro", "plan set"


# Section - organizations: delete

@pytest.mark.parametrize("who", PERSONAS + ("anon",))
def test_nobody_deletes_organizations_directly(api, conn, cast, who):
    before = snapshot(conn, ORGS, MEMBERS)
    with raises_sqlstate("42501"):
        api(who)("delete from public.organizations where id = %s", (cast.team,))
    assert snapshot(conn, ORGS, MEMBERS) == before, f"{who}'s refused delete changed nothing"


def test_service_role_deletes_an_organization_and_its_memberships(api, conn, cast):
    n = api("service").count("delete from public.organizations where id = %s returning id", (cast.team,))
    assert n == 1, "the service role deletes organizations"
    assert scalar(conn, "select count(*) from public.organization_members where org_id = %s", (cast.team,)) == 0, \
        "memberships went with it (the keep-owner rule does not block deleting the whole org)"
    assert scalar(conn, "select count(*) from public.projects where org_id = %s", (cast.team,)) == 0, \
        "projects went with it"


# Section - organization_members: select

@pytest.mark.parametrize("who", PERSONAS)
def test_memberships_are_viewable_by_members_of_the_org(api, cast, who):
    rows = api(who)("select user_id, role::text as role from public.organization_members where org_id = %s",
                    (cast.team,))
    if IN_TEAM[who]:
        roles = {r["user_id"]: r["role"] for r in rows}
        assert roles == {cast.owner.id: "owner", cast.admin.id: "admin", cast.member.id: "member",
                         cast.banned.id: "admin"}, f"{who} sees every membership of the team"
    else:
        assert rows == [], f"{who} must not see the team's memberships"


def test_member_does_not_see_other_orgs_memberships(api, conn, cast):
    rows = api("member")("select distinct org_id from public.organization_members")
    assert {r["org_id"] for r in rows} == {cast.team, personal_org(conn, cast.member)}, \
        "only memberships of the member's own organizations"


def test_suspended_user_sees_no_membership(conn, suspended):
    rows = as_user(conn, suspended)("select org_id from public.organization_members")
    assert rows == [], "a banned/inactive user sees no membership, not even their own"


def test_anon_cannot_read_memberships(api):
    with raises_sqlstate("42501"):
        api("anon")("select org_id from public.organization_members")


def test_service_role_reads_every_membership(api, conn):
    rows = api("service")("select org_id from public.organization_members")
    assert len(rows) == scalar(conn, "select count(*) from public.organization_members"), "service reads all"


# Section - organization_members: insert, update, delete (service role only)

@pytest.mark.parametrize("who", PERSONAS + ("anon",))
def test_nobody_adds_members_directly(api, conn, cast, who):
    before = snapshot(conn, MEMBERS)
    with raises_sqlstate("42501"):
        api(who)("insert into public.organization_members (org_id, user_id, role) values (%s, %s, 'owner')",
                 (cast.team, cast.outsider.id))
    assert snapshot(conn, MEMBERS) == before, f"{who}'s refused insert changed nothing (use invitations)"


@pytest.mark.parametrize("who", PERSONAS + ("anon",))
def test_nobody_changes_roles_directly(api, conn, cast, who):
    before = snapshot(conn, MEMBERS)
    with raises_sqlstate("42501"):
        api(who)("update public.organization_members set role = 'owner' where org_id = %s and user_id = %s",
                 (cast.team, cast.member.id))
    assert snapshot(conn, MEMBERS) == before, f"{who}'s refused update changed nothing (use update_member_role)"


@pytest.mark.parametrize("who", PERSONAS + ("anon",))
def test_nobody_removes_members_directly(api, conn, cast, who):
    before = snapshot(conn, MEMBERS)
    with raises_sqlstate("42501"):
        api(who)("delete from public.organization_members where org_id = %s and user_id = %s",
                 (cast.team, cast.member.id))
    assert snapshot(conn, MEMBERS) == before, f"{who}'s refused delete changed nothing (use remove_member)"


def test_service_role_writes_memberships(api, conn, cast):
    service = api("service")
    assert service.count("insert into public.organization_members (org_id, user_id) values (%s, %s) returning 1",
                         (cast.team, cast.outsider.id)) == 1, "service adds a member"
    assert service.count("update public.organization_members set role = 'admin' where org_id = %s and user_id = %s "
                         "returning 1", (cast.team, cast.outsider.id)) == 1, "service changes a role"
    assert scalar(conn, "select role::text from public.organization_members where org_id = %s and user_id = %s",
                  (cast.team, cast.outsider.id)) == "admin", "the role is stored"
    assert service.count("delete from public.organization_members where org_id = %s and user_id = %s returning 1",
                         (cast.team, cast.outsider.id)) == 1, "service removes a member"
    assert scalar(conn, "select count(*) from public.organization_members where org_id = %s and user_id = %s",
                  (cast.team, cast.outsider.id)) == 0, "the membership is gone"


def test_service_role_cannot_remove_the_last_owner(api, conn, cast):
    before = snapshot(conn, MEMBERS)
    with raises_sqlstate("PT409", "owner"):
        api("service")("delete from public.organization_members where org_id = %s and user_id = %s",
                       (cast.team, cast.owner.id))
    assert snapshot(conn, MEMBERS) == before, "the organization keeps its owner even against the service role"

