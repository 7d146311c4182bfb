"""`tollbooth keys|credits|usage` go through the frontend's RPCs and tables as the
organization's owner (or `--as` another member), under PostgREST's rules."""
from __future__ import annotations

import psycopg
import pytest

from lib.cli import main
from tests.support.personas import make_team, make_user


@pytest.fixture
def team(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        owner, member = make_user(sql, "owner"), make_user(sql, "member")
        org = make_team(sql, owner, slug="keys-team", member=member)
    return fresh_dsn, owner, member, org


def tb(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_create_list_revoke_a_key_as_the_owner(team, capsys):
    dsn, owner, _, org = team
    code, out, err = tb(capsys, "keys", "create", "keys-team", "--name", "ci", "--database-url", dsn)
    assert code == 0, err
    key = out.strip()
    assert key.startswith("xan_") and f"as {owner.email}" in err
    with psycopg.connect(dsn) as c:
        key_id, created_by = c.execute("select id, created_by from api_keys where org_id = %s", (org,)).fetchone()
    assert created_by == owner.id, "created through create_api_key as the owner"
    code, out, _ = tb(capsys, "keys", "list", "keys-team", "--database-url", dsn)
    assert code == 0 and "ci" in out and "active" in out and "key_hash" not in out
    code, out, err = tb(capsys, "keys", "revoke", "keys-team", str(key_id), "--database-url", dsn)
    assert code == 0, err
    with psycopg.connect(dsn) as c:
        assert c.execute("select status from api_keys where id = %s", (key_id,)).fetchone()[0] == "revoked"


def test_a_member_may_list_but_not_create(team, capsys):
    dsn, _, member, _ = team
    code, _, err = tb(capsys, "keys", "create", "keys-team", "--name", "x", "--as", member.email, "--database-url", dsn)
    assert code == 1 and "error:" in err
    with psycopg.connect(dsn) as c:
        assert c.execute("select count(*) from api_keys").fetchone()[0] == 1  # the seed's demo key only
    code, out, _ = tb(capsys, "keys", "list", "keys-team", "--as", member.email, "--database-url", dsn)
    assert code == 0 and "(0 rows)" in out


def test_credits_and_usage_as_the_owner(team, capsys):
    dsn, owner, _, org = team
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("select private.grant_credits(%s, 'adjustment', 1234, null, null, 'test grant')", (org,))
    code, out, err = tb(capsys, "credits", "keys-team", "--database-url", dsn)
    assert code == 0, err
    assert "1234" in out and "test grant" in out and f"as {owner.email}" in out
    code, out, err = tb(capsys, "credits", owner.email, "--database-url", dsn)
    assert code == 0 and "free plan allowance" in out, err
    code, out, err = tb(capsys, "usage", "keys-team", "--days", "7", "--database-url", dsn)
    assert code == 0 and "(0 rows)" in out and "last 7 days" in out, err


def test_an_outsider_sees_no_credits(team, capsys):
    dsn, *_ = team
    with psycopg.connect(dsn, autocommit=True) as c:
        outsider = make_user(c, "outsider")
    code, out, _ = tb(capsys, "credits", "keys-team", "--as", outsider.email, "--database-url", dsn)
    assert code == 0 and out.count("(0 rows)") == 2
