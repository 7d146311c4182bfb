"""Apply supabase/local (plain Postgres only), every migration, and the seed.

Migrations are tracked in `supabase_migrations.schema_migrations` the way the Supabase
CLI tracks them (version = the file's timestamp, name, statements), so a database
migrated here and one migrated by `supabase db push` agree. Each file runs in its own
transaction: a failure leaves nothing of that file and stops with its name and the
Postgres error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg

SUPABASE_DIR = Path(__file__).resolve().parents[2] / "supabase"


class MigrationError(RuntimeError):
    pass


@dataclass
class MigrationReport:
    bootstrapped: bool
    applied: list[str]
    seeded: bool


def is_supabase(conn: psycopg.Connection) -> bool:
    """A Supabase database has the supabase_admin role; the local bootstrap is then skipped."""
    row = conn.execute("select exists (select 1 from pg_roles where rolname = 'supabase_admin')").fetchone()
    return bool(row and row[0])


def _run_file(conn: psycopg.Connection, path: Path, after: tuple[str, tuple] | None = None) -> None:
    sql = path.read_text()
    try:
        with conn.transaction():
            conn.execute(sql)
            if after:
                conn.execute(*after)
    except psycopg.Error as exc:
        detail = exc.diag.message_primary or str(exc)
        where = f" ({exc.diag.context.strip().splitlines()[0]})" if exc.diag.context else ""
        raise MigrationError(f"{path.parent.name}/{path.name} failed: {detail}{where}") from exc


def set_api_key_prefix(conn: psycopg.Connection, prefix: str) -> None:
    """The database mints and recognises API keys; this is where their prefix lives."""
    try:
        conn.execute("update private.app_settings set value = %s where key = 'api_key_prefix'", (prefix,))
    except psycopg.Error as exc:
        raise MigrationError(f"API_KEY_PREFIX {prefix!r} refused: {exc.diag.message_primary or exc}") from exc


def api_key_prefix(conn: psycopg.Connection) -> str:
    row = conn.execute("select value from private.app_settings where key = 'api_key_prefix'").fetchone()
    if row is None:
        raise MigrationError("private.app_settings has no api_key_prefix: is the database migrated?")
    return str(row[0])


def migration_files(root: Path = SUPABASE_DIR) -> list[Path]:
    return sorted((root / "migrations").glob("*.sql"))


def apply_all(dsn: str, *, seed: bool = True, root: Path = SUPABASE_DIR,
              api_key_prefix: str | None = None) -> MigrationReport:
    """Bootstrap (plain Postgres only), apply new migrations, write the API key prefix
    (`api_key_prefix`, else API_KEY_PREFIX, when set) into private.app_settings, seed."""
    prefix = api_key_prefix if api_key_prefix is not None else os.environ.get("API_KEY_PREFIX")
    with psycopg.connect(dsn, autocommit=True) as conn:
        bootstrapped = False
        if not is_supabase(conn):
            for path in sorted((root / "local").glob("*.sql")):
                _run_file(conn, path)
            bootstrapped = True
        conn.execute("create schema if not exists supabase_migrations")
        conn.execute(
            "create table if not exists supabase_migrations.schema_migrations "
            "(version text not null primary key, statements text[], name text)"
        )
        done = {r[0] for r in conn.execute("select version from supabase_migrations.schema_migrations")}
        applied = []
        for path in migration_files(root):
            version, _, name = path.stem.partition("_")
            if version in done:
                continue
            _run_file(conn, path, (
                "insert into supabase_migrations.schema_migrations (version, statements, name) values (%s, %s, %s)",
                (version, [path.read_text()], name),
            ))
            applied.append(path.name)
        if prefix:
            set_api_key_prefix(conn, prefix)
        seeded = False
        if seed and (root / "seed.sql").exists():
            _run_file(conn, root / "seed.sql")
            seeded = True
        return MigrationReport(bootstrapped, applied, seeded)
