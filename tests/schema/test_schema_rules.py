"""Rules that hold for the whole schema, so a new migration cannot quietly break them."""
from __future__ import annotations


def test_every_public_table_has_rls(conn):
    rows = conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity").fetchall()
    assert rows == [], f"tables without RLS: {rows}"


def test_every_security_definer_function_pins_search_path(conn):
    rows = conn.execute(
        "select n.nspname || '.' || p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
        "where p.prosecdef and n.nspname in ('public', 'private') "
        "and not exists (select 1 from unnest(p.proconfig) c where c = 'search_path=\"\"' or c = 'search_path=')"
    ).fetchall()
    assert rows == [], f"SECURITY DEFINER functions without search_path = '': {rows}"


def test_no_function_is_executable_by_anon_unless_meant(conn):
    rows = conn.execute(
        "select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
        "where n.nspname in ('public', 'private') and has_function_privilege('anon', p.oid, 'execute')").fetchall()
    assert rows == [], f"functions anon may call: {rows}"


def test_rpcs_have_no_ambiguous_overloads(conn):
    rows = conn.execute(
        "select p.proname, count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
        "where n.nspname = 'public' group by p.proname having count(*) > 1").fetchall()
    assert rows == [], f"overloaded RPCs (PostgREST PGRST203): {rows}"


def test_policies_name_their_role(conn):
    rows = conn.execute("select tablename, policyname from pg_policies where schemaname = 'public' and 'public' = any(roles)").fetchall()
    assert rows == [], f"policies without a TO clause: {rows}"


def test_policy_columns_and_foreign_keys_are_indexed(conn):
    """Every foreign key column in public is the leading column of some index."""
    rows = conn.execute("""
        select c.conrelid::regclass::text, a.attname
        from pg_constraint c
        join pg_namespace n on n.oid = c.connamespace and n.nspname = 'public'
        join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
        where c.contype = 'f'
          and not exists (select 1 from pg_index i where i.indrelid = c.conrelid and i.indkey[0] = c.conkey[1])
    """).fetchall()
    assert rows == [], f"unindexed foreign keys: {rows}"
