"""What several command groups share: which database a command talks to."""
from __future__ import annotations

import argparse
import os

from lib.core.config import DEFAULT_DATA_DIR, reset_settings
from lib.local.stack import ensure_local_database


def database_url(args: argparse.Namespace) -> str:
    """`--database-url`, else DATABASE_URL, else the local embedded Postgres (started
    and migrated if needed)."""
    return (getattr(args, "database_url", None) or os.environ.get("DATABASE_URL")
            or ensure_local_database(getattr(args, "data_dir", DEFAULT_DATA_DIR)))


def use_local_database_unless_configured(args: argparse.Namespace) -> None:
    """Commands that go through `lib.core.db`: with neither DATABASE_URL nor
    SUPABASE_URL set, point DATABASE_URL at the local embedded Postgres."""
    if not os.environ.get("DATABASE_URL") and not os.environ.get("SUPABASE_URL"):
        os.environ["DATABASE_URL"] = database_url(args)
        reset_settings()
