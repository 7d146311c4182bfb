"""`tollbooth sql --as`: each statement runs as PostgREST runs a request for that user,
so RLS shows a member their organization and not another's, and anon nothing."""
from __future__ import annotations

import psycopg
import pytest

from lib.cli import main
from lib.local.postgrest_session import format_table, split_statements
from tests.support.personas import make_team, make_user


@pytest.fixture
def two_teams(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        alice, bob, carol = make_user(sql, "alice"), make_user(sql, "bob"), make_user(sql, "carol")
        make_team(sql, alice, slug="team-alice", member=bob)
        make_team(sql, carol, slug="team-carol")
    return fresh_dsn, alice, bob, carol


def tb(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_member_sees_their_org_and_not_anothers(two_teams, capsys):
    dsn, _, bob, carol = two_teams
    query = "select slug from public.organizations where not personal order by slug"
    code, out, err = tb(capsys, "sql", "--database-url", dsn, "--as", bob.email, "-c", query)
    assert code == 0, err
    assert "team-alice" in out and "team-carol" not in out and "(1 row)" in out
    assert f"as {bob.email} (role authenticated)" in err
    code, out, _ = tb(capsys, "sql", "--database-url", dsn, "--as", carol.email, "-c", query)
    assert "team-carol" in out and "team-alice" not in out


def test_anon_sees_nothing(two_teams, capsys):
    dsn, *_ = two_teams
    code, out, err = tb(capsys, "sql", "--database-url", dsn, "--anon", "-c",
                        "select slug from public.organizations; select auth.uid() as uid")
    assert "team-" not in out
    assert "permission denied" in err and code == 1
    assert "uid" in out and "(1 row)" in out  # auth.uid() is null for anon


def test_org_defaults_to_its_owner_and_names_its_id(two_teams, capsys):
    dsn, alice, *_ = two_teams
    code, out, err = tb(capsys, "sql", "--database-url", dsn, "--org", "team-alice", "-c",
                        "select o.slug, auth.jwt() ->> 'email' as email from public.organizations o where o.id = %(org)s")
    assert code == 0, err
    assert "team-alice" in out and alice.email in out


def test_statements_roll_back_unless_commit(two_teams, capsys):
    dsn, alice, *_ = two_teams
    update = f"update public.profiles set full_name = 'Changed' where id = '{alice.id}'"
    code, out, err = tb(capsys, "sql", "--database-url", dsn, "--as", alice.email, "-c", update)
    assert code == 0 and "UPDATE 1" in out, err
    with psycopg.connect(dsn) as c:
        assert c.execute("select full_name from profiles where id = %s", (alice.id,)).fetchone()[0] == "Alice"
    tb(capsys, "sql", "--database-url", dsn, "--as", alice.email, "--commit", "-c", update)
    with psycopg.connect(dsn) as c:
        assert c.execute("select full_name from profiles where id = %s", (alice.id,)).fetchone()[0] == "Changed"


def test_statements_read_from_stdin(two_teams, capsys, monkeypatch):
    import io

    dsn, _, bob, _ = two_teams
    monkeypatch.setattr("sys.stdin", io.StringIO("select 1 as one;\nselect\n  'a;b' as two;\n"))
    code, out, err = tb(capsys, "sql", "--database-url", dsn, "--as", bob.email)
    assert code == 0, err
    assert out.count("(1 row)") == 2 and "a;b" in out


def test_unknown_user_is_a_clear_error(fresh_dsn, capsys):
    code, _, err = tb(capsys, "sql", "--database-url", fresh_dsn, "--as", "nobody@example.test", "-c", "select 1")
    assert code == 1 and "no user with email nobody@example.test" in err


def test_helpers():
    assert split_statements("select ';'; select $$a;b$$; -- c;\nselect 3") == ["select ';'", "select $$a;b$$",
                                                                               "select 3"]
    assert format_table(["n", "name"], [(1, "x"), (22, None)]).splitlines() == [
        "n  | name", "---+-----", " 1 | x", "22 |", "(2 rows)"]
