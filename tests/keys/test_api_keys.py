"""create_api_key and revoke_api_key as PostgREST runs them: owners and admins make keys
(only sha256(key) is stored) and revoke them; everyone else is refused and nothing changes."""
from __future__ import annotations

import uuid

import pytest

from tests.support.metering import KEY_RE, create_key, sha256
from tests.support.pg import one, raises_sqlstate, scalar, snapshot

# Section - create_api_key


def stored_key(conn, key_id) -> dict:
    return one(conn, "select * from public.api_keys where id = %s", (key_id,))


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_owners_and_admins_create_keys(conn, cast, who):
    person = getattr(cast, who)
    expires = scalar(conn, "select now() + interval '30 days'")
    k = create_key(conn, person, cast.team, name="  CI key  ", description="for CI", project_id=cast.project,
                   expires_at=expires)
    assert KEY_RE.match(k["key"]), f"the key is 'xan_' and 64 hex characters: {k['key']}"
    row = stored_key(conn, k["id"])
    assert bytes(row["key_hash"]) == sha256(k["key"]), "only sha256(key) is stored"
    assert row["prefix"] == k["prefix"] == k["key"][:12], "the display prefix is 'xan_' and the first 8 characters"
    assert (row["org_id"], row["project_id"], row["created_by"], row["name"], row["description"], row["status"],
            row["expires_at"]) == (cast.team, cast.project, person.id, "CI key", "for CI", "active", expires), \
        f"the key row: {row}"
    assert k["key"] not in str(row), "the plaintext is stored nowhere in the row"
    hashed = scalar(conn, "select sha256(convert_to(%s, 'UTF8')) = key_hash from public.api_keys where id = %s",
                    (k["key"], k["id"]))
    assert hashed, "sha256(convert_to(key, 'UTF8')) in SQL matches the stored hash"


def test_every_key_is_different(conn, cast):
    keys = {create_key(conn, cast.owner, cast.team, name=f"k{i}")["key"] for i in range(5)}
    assert len(keys) == 5, "five calls, five different keys"


@pytest.mark.parametrize("who,sqlstate", [("member", "42501"), ("outsider", "42501"), ("banned", "42501"),
                                          ("anon", "42501")])
def test_others_cannot_create_keys(conn, api, cast, who, sqlstate):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate(sqlstate):
        api(who)("select public.create_api_key(org_id := %s, name := 'nope')", (cast.team,))
    assert snapshot(conn, "public.api_keys") == before, f"{who}'s refused create_api_key made no key"


def test_service_role_cannot_create_keys_without_a_user(conn, api, cast):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT401"):
        api("service")("select public.create_api_key(org_id := %s, name := 'nope')", (cast.team,))
    assert snapshot(conn, "public.api_keys") == before, "no key without a signed-in caller"


def test_create_key_for_an_unknown_org_is_404(conn, api):
    with raises_sqlstate("PT404"):
        api("owner")("select public.create_api_key(org_id := %s, name := 'nope')", (uuid.uuid4(),))


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, None])
def test_create_key_needs_a_name(conn, api, cast, name):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT400", "name"):
        api("admin")("select public.create_api_key(org_id := %s, name := %s)", (cast.team, name))
    assert snapshot(conn, "public.api_keys") == before, "no key was made"


def test_create_key_refuses_another_orgs_project(conn, api, cast):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT400", "not in this organization"):
        api("owner")("select public.create_api_key(org_id := %s, name := 'k', project_id := %s)",
                     (cast.team, cast.other_project))
    assert snapshot(conn, "public.api_keys") == before, "no key was made"


@pytest.mark.parametrize("when", ["now() - interval '1 day'", "now()"])
def test_create_key_refuses_a_past_expiry(conn, api, cast, when):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT400", "future"):
        api("owner")(f"select public.create_api_key(org_id := %s, name := 'k', expires_at := {when})", (cast.team,))
    assert snapshot(conn, "public.api_keys") == before, "no key was made"


# Section - revoke_api_key


def test_admin_revokes_a_key(conn, api, cast, money):
    got = api("admin").one("select public.revoke_api_key(id := %s) as r", (money.key["id"],))["r"]
    row = stored_key(conn, money.key["id"])
    assert got == {"id": money.key["id"], "status": "revoked", "revoked_at": got["revoked_at"]} and got["revoked_at"], \
        f"revoke_api_key reports the revocation: {got}"
    assert (row["status"], row["revoked_by"]) == ("revoked", cast.admin.id) and row["revoked_at"] is not None, \
        f"the key is revoked by the admin: {row}"
    listed = api("member")("select status from public.api_keys where id = %s", (money.key["id"],))
    assert [r["status"] for r in listed] == ["revoked"], "members still list it, as revoked"


def test_revoking_twice_is_a_no_op(conn, api, cast, money):
    api("admin")("select public.revoke_api_key(id := %s)", (money.key["id"],))
    first = stored_key(conn, money.key["id"])
    again = api("owner").one("select public.revoke_api_key(id := %s) as r", (money.key["id"],))["r"]
    second = stored_key(conn, money.key["id"])
    assert again["status"] == "revoked", f"the second call reports the revoked key: {again}"
    assert (second["status"], second["revoked_at"], second["revoked_by"]) == \
        (first["status"], first["revoked_at"], first["revoked_by"]), "the first revocation is kept as it was"


@pytest.mark.parametrize("who,sqlstate", [("member", "42501"), ("banned", "42501"), ("outsider", "PT404"),
                                          ("anon", "42501")])
def test_others_cannot_revoke(conn, api, cast, money, who, sqlstate):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate(sqlstate):
        api(who)("select public.revoke_api_key(id := %s)", (money.key["id"],))
    assert snapshot(conn, "public.api_keys") == before, f"{who}'s refused revoke changed nothing"
    assert stored_key(conn, money.key["id"])["status"] == "active", "the key stays active"


def test_revoking_an_unknown_key_is_404(conn, api):
    with raises_sqlstate("PT404"):
        api("owner")("select public.revoke_api_key(id := %s)", (uuid.uuid4(),))


def test_admin_of_one_org_cannot_revoke_anothers_key(conn, api, cast, money):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT404"):
        api("admin")("select public.revoke_api_key(id := %s)", (money.other_key["id"],))
    assert snapshot(conn, "public.api_keys") == before, "another organization's key is not even found"
