"""`tollbooth keys sync-unkey`, and the Unkey side of `keys create|revoke|rotate`.

With UNKEY_ROOT_KEY and UNKEY_API_ID set, a key created, revoked or rotated here is
mirrored at Unkey too (lib.keys.managed); `keys sync-unkey` reconciles both sides (keys
the frontend made through PostgREST, Unkey calls that failed). Without them nothing
calls Unkey."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from lib.cli.common import database_url
from lib.core.config import get_settings
from lib.core.db import PsycopgDatabase
from lib.core.errors import TollboothError
from lib.keys.managed import after_create, after_revoke, after_rotate, sync_unkey
from lib.keys.unkey import UnkeyClient, UnkeyConfig


def unkey_client() -> UnkeyClient | None:
    config = UnkeyConfig.from_settings(get_settings())
    return UnkeyClient(config) if config else None


def _with_unkey(args: argparse.Namespace, fn: Callable[[PsycopgDatabase, UnkeyClient], Any]) -> Any:
    unkey = unkey_client()
    if unkey is None:
        return None
    db = PsycopgDatabase(database_url(args), pool_size=1)
    try:
        return fn(db, unkey)
    finally:
        db.close()


def unkey_created(args: argparse.Namespace, key_id: str) -> str | None:
    """After `keys create`: mirror at Unkey, or (Unkey failing) remove the key and raise."""
    return _with_unkey(args, lambda db, unkey: after_create(db, unkey, key_id))


def unkey_revoked(args: argparse.Namespace, key_id: str) -> int:
    """After `keys revoke`: delete the mirror; Unkey failing is reported, not undone."""
    try:
        _with_unkey(args, lambda db, unkey: after_revoke(db, unkey, key_id))
    except TollboothError as exc:
        print(f"revoked here, but Unkey: {exc.message}; run `tollbooth keys sync-unkey` later", file=sys.stderr)
        return 1
    return 0


def unkey_rotated(args: argparse.Namespace, key_id: str, grace_seconds: int) -> int:
    """After `keys rotate`: reroll the mirror with the same grace; Unkey failing is reported."""
    try:
        _with_unkey(args, lambda db, unkey: after_rotate(db, unkey, key_id, grace_seconds))
    except TollboothError as exc:
        print(f"rotated here, but Unkey: {exc.message}; run `tollbooth keys sync-unkey` later", file=sys.stderr)
        return 1
    return 0


def cmd_keys_sync_unkey(args: argparse.Namespace) -> int:
    if unkey_client() is None:
        print("error: set UNKEY_ROOT_KEY and UNKEY_API_ID to sync keys with Unkey", file=sys.stderr)
        return 1
    report = _with_unkey(args, sync_unkey)
    print(f"created={len(report.created)} deleted={len(report.deleted)} "
          f"orphans_deleted={len(report.orphans_deleted)} errors={len(report.errors)}")
    for line in report.errors:
        print(f"error: {line}", file=sys.stderr)
    return 1 if report.errors else 0


def register(ks: Any) -> None:
    sy = ks.add_parser("sync-unkey", help="reconcile keys here with their mirrors at Unkey")
    sy.add_argument("--database-url", help="the database (default: DATABASE_URL, else the local embedded one)")
    sy.set_defaults(func=cmd_keys_sync_unkey)
