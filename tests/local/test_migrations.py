"""The bootstrap and migrations from empty, twice; failures leave nothing behind."""
from __future__ import annotations

import shutil

import psycopg
import pytest

from lib.local import migrate
from tests.support.pg import clone_database, drop_database


@pytest.fixture
def empty_dsn(pg_admin_dsn):
    name = "empty_migrate_test"
    drop_database(pg_admin_dsn, name)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as c:
        c.execute(f'create database "{name}"')
    yield pg_admin_dsn.replace("/postgres?", f"/{name}?")
    drop_database(pg_admin_dsn, name)


def test_from_empty_then_again_applies_nothing(empty_dsn):
    first = migrate.apply_all(empty_dsn)
    files = [p.name for p in migrate.migration_files()]
    assert first.bootstrapped and first.seeded
    assert first.applied == files, "every migration applied in file order"
    second = migrate.apply_all(empty_dsn)
    assert second.applied == [], "second run applies nothing"
    with psycopg.connect(empty_dsn) as c:
        rows = c.execute("select version, name, array_length(statements, 1) from supabase_migrations.schema_migrations order by version").fetchall()
        assert [f"{v}_{n}.sql" for v, n, _ in rows] == files, "tracked like the Supabase CLI"
        assert all(n == 1 for *_, n in rows)
        assert c.execute("select count(*) from auth.users where email like '%%@example.com'").fetchone()[0] == 2, "seed ran once (idempotent)"


def test_failed_migration_leaves_nothing_and_names_the_file(empty_dsn, tmp_path):
    root = tmp_path / "supabase"
    shutil.copytree(migrate.SUPABASE_DIR, root)
    (root / "migrations" / "29991231000000_broken.sql").write_text(
        "create table public.half_done (id int);\nselect * from public.no_such_table;\n")
    with pytest.raises(migrate.MigrationError) as err:
        migrate.apply_all(empty_dsn, root=root)
    assert "29991231000000_broken.sql" in str(err.value)
    assert "no_such_table" in str(err.value)
    with psycopg.connect(empty_dsn) as c:
        assert c.execute("select to_regclass('public.half_done')").fetchone()[0] is None, "nothing half-applied"
        assert not c.execute("select 1 from supabase_migrations.schema_migrations where version = '29991231000000'").fetchone()
        assert c.execute("select count(*) from supabase_migrations.schema_migrations").fetchone()[0] == len(migrate.migration_files()), \
            "the good migrations before it stay applied"


def test_bootstrap_recreates_supabase_roles_and_auth_functions(conn):
    roles = {r[0]: r[1] for r in conn.execute(
        "select rolname, rolbypassrls from pg_roles where rolname in ('anon','authenticated','service_role','authenticator')")}
    assert set(roles) == {"anon", "authenticated", "service_role", "authenticator"}
    assert roles["service_role"] is True and roles["authenticated"] is False
    conn.execute("select set_config('request.jwt.claims', %s, true)",
                 ('{"sub":"11111111-1111-4111-8111-111111111111","role":"authenticated","email":"x@y.z"}',))
    uid, role, email, jwt = conn.execute("select auth.uid(), auth.role(), auth.email(), auth.jwt()").fetchone()
    assert str(uid) == "11111111-1111-4111-8111-111111111111" and role == "authenticated" and email == "x@y.z"
    assert jwt["role"] == "authenticated"
    conn.execute("select set_config('request.jwt.claims', '', true)")
    assert conn.execute("select auth.uid()").fetchone()[0] is None, "empty setting (after commit) reads as NULL"


def test_forgotten_grant_is_not_exposed(conn):
    """supabase/local grants new public tables to anon, like Supabase's default privileges;
    the tenancy_hardening migration takes those defaults back, so a table a migration forgot
    to grant (or to put RLS on) is not exposed, and every grant is explicit."""
    conn.execute("create table public.forgot_rls (id int)")
    priv = conn.execute("select has_table_privilege('anon', 'public.forgot_rls', 'select, insert')").fetchone()[0]
    assert priv is False


def test_supabase_config_exposes_only_public_and_seeds():
    import tomllib

    config = tomllib.loads((migrate.SUPABASE_DIR / "config.toml").read_text())
    assert "private" not in config["api"]["schemas"], "policy helpers stay unexposed"
    assert "public" in config["api"]["schemas"]
    assert config["db"]["seed"]["sql_paths"] == ["./seed.sql"]
    assert all(p.name[:14].isdigit() for p in migrate.migration_files()), "CLI-style YYYYMMDDHHMMSS_name.sql"
