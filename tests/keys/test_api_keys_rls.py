"""Row level security and grants of public.api_keys, as PostgREST runs requests: members
list their organization's keys, nobody but the service role (the proxy) reads a key's
hash, and only the service role writes directly (the matrix is in tests.support.rls)."""
from __future__ import annotations

import pytest

from tests.support.metering import sha256
from tests.support.pg import raises_sqlstate, scalar
from tests.support.rls import (
    EVERYONE,
    NOT_SERVICE,
    PERSONAS,
    TABLES,
    check_direct_write_is_refused,
    check_members_see_only_their_own_orgs_rows,
    check_select,
)

KEY_TABLES = ["public.api_keys"]


# Section - select


@pytest.mark.parametrize("who", EVERYONE)
@pytest.mark.parametrize("name", KEY_TABLES)
def test_select(conn, api, cast, money, name, who):
    check_select(conn, api, cast, TABLES[name], who)


@pytest.mark.parametrize("name", KEY_TABLES)
def test_members_see_only_their_own_orgs_rows(conn, api, cast, money, name):
    check_members_see_only_their_own_orgs_rows(api, cast, TABLES[name])


@pytest.mark.parametrize("who", PERSONAS)
def test_nobody_reads_key_hashes(conn, api, cast, money, who):
    with raises_sqlstate("42501"):
        api(who)("select key_hash from public.api_keys where org_id = %s", (cast.team,))
    with raises_sqlstate("42501"):
        api(who)("select * from public.api_keys where org_id = %s", (cast.team,))


def test_members_list_keys_without_the_secret(conn, api, cast, money):
    listed = api("member")("select id, name, prefix, status, usage_count from public.api_keys where org_id = %s",
                           (cast.team,))
    assert [(str(r["id"]), r["name"], r["prefix"], r["status"], r["usage_count"]) for r in listed] == \
        [(money.key["id"], "team key", money.key["key"][:12], "active", 1)], f"a member lists the team's key: {listed}"


def test_service_role_reads_key_hashes(conn, api, cast, money):
    got = api("service").one("select key_hash from public.api_keys where id = %s", (money.key["id"],))
    assert bytes(got["key_hash"]) == sha256(money.key["key"]), "the service role (the proxy) reads the hash"


# Section - writes


@pytest.mark.parametrize("who", NOT_SERVICE)
@pytest.mark.parametrize("op", ["insert", "update", "delete"])
@pytest.mark.parametrize("name", KEY_TABLES)
def test_direct_writes_are_refused(conn, api, cast, money, name, op, who):
    check_direct_write_is_refused(conn, api, cast, TABLES[name], op, who)


def test_service_role_writes_api_keys(conn, api, cast, money):
    svc = api("service")
    new_id = svc.one("insert into public.api_keys (org_id, name, prefix, key_hash) "
                     "values (%s, 'imported', 'xan_imported', %s) returning id",
                     (cast.team, sha256("imported")))["id"]
    assert scalar(conn, "select name from public.api_keys where id = %s", (new_id,)) == "imported", "inserted"
    assert svc.count("update public.api_keys set name = 'renamed' where id = %s returning id", (new_id,)) == 1, \
        "the service role updates a key"
    assert scalar(conn, "select name from public.api_keys where id = %s", (new_id,)) == "renamed", "updated"
    assert svc.count("delete from public.api_keys where id = %s returning id", (new_id,)) == 1, "and deletes it"
    assert scalar(conn, "select count(*) from public.api_keys where id = %s", (new_id,)) == 0, "deleted"
