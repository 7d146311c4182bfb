"""The local database as the CLI and the dev stack use it: start (or reuse) the
embedded Postgres, migrate and seed it, look up a local user."""
from __future__ import annotations

import uuid
from pathlib import Path

import psycopg

from lib.local import embedded, migrate

# the JWT secret of a local stack (Supabase CLI's default); never used with a real project
LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


def ensure_local_database(data_dir: str | Path) -> str:
    """The DSN of the embedded Postgres in `data_dir`, started if needed and migrated."""
    dsn = embedded.start(Path(data_dir))
    migrate.apply_all(dsn)
    return dsn


def user_by_email(dsn: str, email: str) -> tuple[uuid.UUID, str] | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select id, email from auth.users where lower(email) = lower(%s)", (email,)).fetchone()
    return (row[0], row[1]) if row else None
