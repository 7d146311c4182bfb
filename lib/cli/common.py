"""What several command groups share: which database a command talks to."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from lib.core.config import DEFAULT_DATA_DIR, reset_settings
from lib.local import embedded
from lib.local.stack import ensure_local_database


class NoDatabase(RuntimeError):
    pass


def database_url(args: argparse.Namespace, *, start: bool = True, migrate: bool = True) -> str:
    """`--database-url`, else DATABASE_URL, else the local embedded Postgres: started and
    migrated if needed (`start`), started only (`migrate=False`), or only when already
    running (`start=False`: NoDatabase otherwise)."""
    given = getattr(args, "database_url", None) or os.environ.get("DATABASE_URL")
    if given:
        return str(given)
    data_dir = Path(getattr(args, "data_dir", DEFAULT_DATA_DIR))
    if not start:
        url = embedded.running_url(data_dir)
        if url is None:
            raise NoDatabase(f"no database: set DATABASE_URL or --database-url, or start the local one with "
                             f"`tollbooth db start` (nothing runs in {data_dir})")
        return url
    if not migrate:
        return embedded.start(data_dir)
    return ensure_local_database(data_dir)


def use_local_database_unless_configured(args: argparse.Namespace) -> None:
    """Commands that go through `lib.core.db`: with neither DATABASE_URL nor
    SUPABASE_URL set, point DATABASE_URL at the local embedded Postgres."""
    if not os.environ.get("DATABASE_URL") and not os.environ.get("SUPABASE_URL"):
        os.environ["DATABASE_URL"] = database_url(args)
        reset_settings()
