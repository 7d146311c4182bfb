"""projects: members of the organization read them; admins and owners create, edit
(name, description, archived_at) and delete them; created_by is the caller."""
from __future__ import annotations

import pytest

from tests.support.personas import PERSONAS, personal_org
from tests.support.pg import as_user, raises_sqlstate, scalar, snapshot

PROJECTS = "public.projects"
IN_TEAM = {"owner": True, "admin": True, "member": True, "outsider": False, "platform_admin": False, "banned": False}
ADMIN_OF_TEAM = {"owner": True, "admin": True, "member": False, "outsider": False, "platform_admin": False,
                 "banned": False}


def project_name(conn, project_id):
    return scalar(conn, "select name from public.projects where id = %s", (project_id,))


# Section - select

@pytest.mark.parametrize("who", PERSONAS)
def test_projects_are_viewable_by_members(api, cast, who):
    rows = api(who)("select id, name from public.projects where org_id = %s", (cast.team,))
    if IN_TEAM[who]:
        assert [r["id"] for r in rows] == [cast.project], f"{who} sees the team's project"
    else:
        assert rows == [], f"{who} must not see the team's projects"


def test_member_sees_only_their_orgs_projects(api, cast):
    rows = api("member")("select id from public.projects")
    assert {r["id"] for r in rows} == {cast.project}, "not the other team's project"


def test_suspended_member_sees_no_project(conn, suspended):
    rows = as_user(conn, suspended)("select id from public.projects")
    assert rows == [], "a banned/inactive member sees no project"


def test_anon_cannot_read_projects(api):
    with raises_sqlstate("42501"):
        api("anon")("select id from public.projects")


def test_service_role_reads_every_project(api, conn):
    rows = api("service")("select id from public.projects")
    assert len(rows) == scalar(conn, "select count(*) from public.projects"), "the service role reads all"


# Section - insert

@pytest.mark.parametrize("who", PERSONAS)
def test_projects_are_created_by_org_admins_only(api, conn, cast, who):
    me = getattr(cast, who)
    if ADMIN_OF_TEAM[who]:
        row = api(who).one("insert into public.projects (org_id, name, description) values (%s, 'New', 'd') "
                           "returning id, created_by", (cast.team,))
        assert row and row["created_by"] == me.id, f"{who} creates a project and is recorded as its creator"
        assert project_name(conn, row["id"]) == "New", "the project is stored"
    else:
        before = snapshot(conn, PROJECTS)
        with raises_sqlstate("42501"):
            api(who)("insert into public.projects (org_id, name) values (%s, 'New')", (cast.team,))
        assert snapshot(conn, PROJECTS) == before, f"{who}'s refused insert (WITH CHECK) changed nothing"


def test_member_creates_projects_in_their_personal_org(api, conn, cast):
    mine = personal_org(conn, cast.member)
    n = api("member").count("insert into public.projects (org_id, name) values (%s, 'Side project') returning id",
                            (mine,))
    assert n == 1, "a user owns their personal org and creates projects there"


def test_admin_cannot_create_in_another_org(api, conn, cast):
    before = snapshot(conn, PROJECTS)
    with raises_sqlstate("42501"):
        api("admin")("insert into public.projects (org_id, name) values (%s, 'Sneaky')", (cast.other_team,))
    assert snapshot(conn, PROJECTS) == before, "refused insert changed nothing"


def test_creator_cannot_be_forged(api, conn, cast):
    before = snapshot(conn, PROJECTS)
    with raises_sqlstate("42501"):
        api("owner")("insert into public.projects (org_id, name, created_by) values (%s, 'Forged', %s)",
                     (cast.team, cast.member.id))
    assert snapshot(conn, PROJECTS) == before, "created_by has no insert grant; nothing changed"


def test_anon_cannot_create_projects(api, conn, cast):
    before = snapshot(conn, PROJECTS)
    with raises_sqlstate("42501"):
        api("anon")("insert into public.projects (org_id, name) values (%s, 'Anon')", (cast.team,))
    assert snapshot(conn, PROJECTS) == before, "anon's refused insert changed nothing"


def test_service_role_creates_projects(api, conn, cast):
    n = api("service").count("insert into public.projects (org_id, name) values (%s, 'Svc') returning id",
                             (cast.team,))
    assert n == 1, "the service role creates projects"


# Section - update

@pytest.mark.parametrize("who", PERSONAS)
def test_projects_are_edited_by_org_admins_only(api, conn, cast, who):
    n = api(who).count("update public.projects set name = 'Edited', description = 'new', archived_at = now() "
                       "where id = %s returning id", (cast.project,))
    if ADMIN_OF_TEAM[who]:
        assert n == 1, f"{who} edits the project"
        assert project_name(conn, cast.project) == "Edited", "the edit is stored"
    else:
        assert n == 0, f"{who} changes no row (USING denial)"
        assert project_name(conn, cast.project) == "Team project", f"{who} left the project unchanged"


def test_suspended_admin_cannot_edit(conn, cast, suspended):
    n = as_user(conn, suspended).count("update public.projects set name = 'Nope' where id = %s returning id",
                                       (cast.project,))
    assert n == 0, "a banned/inactive admin changes no row"
    assert project_name(conn, cast.project) == "Team project", "unchanged"


@pytest.mark.parametrize("column, value", [("org_id", None), ("created_by", None), ("created_at", None)])
def test_admin_cannot_move_or_reattribute_a_project(api, conn, cast, column, value):
    value = cast.other_team if column == "org_id" else value
    before = snapshot(conn, PROJECTS)
    with raises_sqlstate("42501"):
        api("owner")(f"update public.projects set {column} = %s where id = %s", (value, cast.project))
    assert snapshot(conn, PROJECTS) == before, f"{column} has no update grant; nothing changed"


def test_anon_cannot_edit_projects(api, conn, cast):
    before = snapshot(conn, PROJECTS)
    with raises_sqlstate("42501"):
        api("anon")("update public.projects set name = 'Anon' where id = %s", (cast.project,))
    assert snapshot(conn, PROJECTS) == before, "anon's refused update changed nothing"


def test_service_role_edits_projects(api, conn, cast):
    n = api("service").count("update public.projects set name = 'Svc' where id = %s returning id", (cast.project,))
    assert n == 1, "the service role edits projects"
    assert project_name(conn, cast.project) == "Svc", "stored"


# Section - delete

@pytest.mark.parametrize("who", PERSONAS)
def test_projects_are_deleted_by_org_admins_only(api, conn, cast, who):
    n = api(who).count("delete from public.projects where id = %s returning id", (cast.project,))
    if ADMIN_OF_TEAM[who]:
        assert n == 1, f"{who} deletes the project"
        assert project_name(conn, cast.project) is None, "the project is gone"
    else:
        assert n == 0, f"{who} deletes no row (USING denial)"
        assert project_name(conn, cast.project) == "Team project", "the project is still there"


def test_suspended_admin_cannot_delete(conn, cast, suspended):
    n = as_user(conn, suspended).count("delete from public.projects where id = %s returning id", (cast.project,))
    assert n == 0, "a banned/inactive admin deletes nothing"
    assert project_name(conn, cast.project) == "Team project", "still there"


def test_anon_cannot_delete_projects(api, conn, cast):
    before = snapshot(conn, PROJECTS)
    with raises_sqlstate("42501"):
        api("anon")("delete from public.projects where id = %s", (cast.project,))
    assert snapshot(conn, PROJECTS) == before, "anon's refused delete changed nothing"


def test_service_role_deletes_projects(api, conn, cast):
    n = api("service").count("delete from public.projects where id = %s returning id", (cast.other_project,))
    assert n == 1, "the service role deletes projects"
    assert project_name(conn, cast.other_project) is None, "gone"
