"""invitations: admins and owners of the organization read (every column but token_hash)
and withdraw them; they are created and accepted only through the RPCs."""
from __future__ import annotations

import pytest

from tests.support.personas import PERSONAS
from tests.support.pg import as_user, raises_sqlstate, scalar, snapshot

INVITES = "public.invitations"
VISIBLE = "id, org_id, email, role, invited_by, expires_at, accepted_at, accepted_by, created_at"
ADMIN_OF_TEAM = {"owner": True, "admin": True, "member": False, "outsider": False, "platform_admin": False,
                 "banned": False}


def exists(conn, inv_id) -> bool:
    return scalar(conn, "select count(*) from public.invitations where id = %s", (inv_id,)) == 1


# Section - select

@pytest.mark.parametrize("who", PERSONAS)
def test_invitations_are_viewable_by_org_admins_only(api, cast, who):
    rows = api(who)(f"select {VISIBLE} from public.invitations where org_id = %s", (cast.team,))
    if ADMIN_OF_TEAM[who]:
        assert [r["id"] for r in rows] == [cast.invitation], f"{who} sees the team's open invitation"
        assert rows[0]["email"] == "invitee@example.test", "with its address"
    else:
        assert rows == [], f"{who} must not see the team's invitations"


def test_admin_does_not_see_other_orgs_invitations(api, cast):
    rows = api("admin")("select id from public.invitations")
    assert {r["id"] for r in rows} == {cast.invitation}, "only invitations of organizations the caller administers"


@pytest.mark.parametrize("who", ["owner", "admin", "member", "outsider"])
@pytest.mark.parametrize("columns", ["token_hash", "id, token_hash", "*"])
def test_token_hash_is_never_readable(api, cast, who, columns):
    with raises_sqlstate("42501"):
        api(who)(f"select {columns} from public.invitations where org_id = %s", (cast.team,))


def test_token_hash_cannot_be_probed_in_a_filter(api, cast):
    with raises_sqlstate("42501"):
        api("owner")("select id from public.invitations where token_hash = sha256('guess'::bytea)")


def test_suspended_admin_sees_no_invitation(conn, suspended):
    rows = as_user(conn, suspended)("select id from public.invitations")
    assert rows == [], "a banned/inactive admin sees no invitation"


def test_anon_cannot_read_invitations(api):
    with raises_sqlstate("42501"):
        api("anon")("select id from public.invitations")


def test_service_role_reads_invitations_with_hash(api, cast):
    row = api("service").one("select token_hash from public.invitations where id = %s", (cast.invitation,))
    assert row and len(row["token_hash"]) == 32, "the service role reads the stored sha256"


# Section - insert and update (RPCs only)

@pytest.mark.parametrize("who", PERSONAS + ("anon",))
def test_nobody_inserts_invitations_directly(api, conn, cast, who):
    before = snapshot(conn, INVITES)
    with raises_sqlstate("42501"):
        api(who)("insert into public.invitations (org_id, email, token_hash) values (%s, 'x@example.test', "
                 "sha256('t'::bytea))", (cast.team,))
    assert snapshot(conn, INVITES) == before, f"{who}'s refused insert changed nothing (use invite_member)"


@pytest.mark.parametrize("who", PERSONAS + ("anon",))
def test_nobody_updates_invitations_directly(api, conn, cast, who):
    before = snapshot(conn, INVITES)
    with raises_sqlstate("42501"):
        api(who)("update public.invitations set role = 'admin', expires_at = now() + interval '1 year' "
                 "where id = %s", (cast.invitation,))
    assert snapshot(conn, INVITES) == before, f"{who}'s refused update changed nothing"


def test_service_role_inserts_and_updates_invitations(api, conn, cast):
    service = api("service")
    n = service.count("insert into public.invitations (org_id, email, token_hash) values (%s, 'svc@example.test', "
                      "sha256('svc'::bytea)) returning id", (cast.team,))
    assert n == 1, "the service role inserts invitations"
    n = service.count("update public.invitations set role = 'admin' where email = 'svc@example.test' returning id")
    assert n == 1, "the service role updates invitations"
    assert scalar(conn, "select role::text from public.invitations where email = 'svc@example.test'") == "admin", \
        "the update is stored"


# Section - delete

@pytest.mark.parametrize("who", PERSONAS)
def test_invitations_are_withdrawn_by_org_admins_only(api, conn, cast, who):
    n = api(who).count("delete from public.invitations where id = %s returning id", (cast.invitation,))
    if ADMIN_OF_TEAM[who]:
        assert n == 1, f"{who} withdraws the invitation"
        assert not exists(conn, cast.invitation), "the invitation is gone"
    else:
        assert n == 0, f"{who} deletes no row (USING denial)"
        assert exists(conn, cast.invitation), "the invitation is still there"


def test_admin_cannot_withdraw_another_orgs_invitation(api, conn, cast):
    n = api("admin").count("delete from public.invitations where id = %s returning id", (cast.other_invitation,))
    assert n == 0, "an admin of one org deletes nothing in another"
    assert exists(conn, cast.other_invitation), "the other org's invitation is still there"


def test_suspended_admin_cannot_withdraw(conn, cast, suspended):
    n = as_user(conn, suspended).count("delete from public.invitations where id = %s returning id", (cast.invitation,))
    assert n == 0, "a banned/inactive admin deletes nothing"
    assert exists(conn, cast.invitation), "the invitation is still there"


def test_anon_cannot_delete_invitations(api, conn, cast):
    before = snapshot(conn, INVITES)
    with raises_sqlstate("42501"):
        api("anon")("delete from public.invitations where id = %s", (cast.invitation,))
    assert snapshot(conn, INVITES) == before, "anon's refused delete changed nothing"


def test_service_role_deletes_invitations(api, conn, cast):
    n = api("service").count("delete from public.invitations where id = %s returning id", (cast.other_invitation,))
    assert n == 1, "the service role deletes invitations"
    assert not exists(conn, cast.other_invitation), "gone"
