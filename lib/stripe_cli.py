"""`tollbooth stripe sync [--since DATE]`: backfill the Stripe mirror from the API.

Lists products, prices, customers and subscriptions (in that order, so a subscription
finds the plan its product sells), a page of 100 at a time, and stores each page in
one transaction through the same SQL sync functions the webhook uses, as true now.
Idempotent: run it again and nothing changes but `synced_at`. Progress on stderr.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any, TextIO

from lib.config import DEFAULT_DATA_DIR, get_settings, reset_settings
from lib.errors import TollboothError

# (kind stored, list endpoint, extra list parameters)
RESOURCES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("product", "products", {}),
    ("price", "prices", {}),
    ("customer", "customers", {}),
    ("subscription", "subscriptions", {"status": "all"}),
)


def parse_date(value: str) -> int:
    """A date (YYYY-MM-DD, UTC) or ISO timestamp as epoch seconds."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp())


def backfill(db: Any, client: Any, *, since: int | None = None, out: TextIO | None = None) -> dict[str, int]:
    """Every object of every resource, stored page by page. Returns counts per kind."""
    out = out or sys.stderr
    from lib.stripe_api import list_pages
    from lib.stripe_events import sync_objects

    totals: dict[str, int] = {}
    for kind, resource, extra in RESOURCES:
        params = {**extra, **({"created": {"gte": since}} if since is not None else {})}
        totals[kind] = 0
        for page in list_pages(client, resource, params):
            sync_objects(db, kind, page)
            totals[kind] += len(page)
            print(f"{resource}: {totals[kind]} synced", file=out, flush=True)
        print(f"{resource}: done, {totals[kind]} in all", file=out, flush=True)
    return totals


def cmd_stripe_sync(args: argparse.Namespace) -> int:
    from lib.db import get_database
    from lib.stripe_api import make_client

    if not os.environ.get("DATABASE_URL") and not os.environ.get("SUPABASE_URL"):
        from lib.cli import _default_dsn

        os.environ["DATABASE_URL"] = _default_dsn(getattr(args, "data_dir", DEFAULT_DATA_DIR))
        reset_settings()
    try:
        totals = backfill(get_database(), make_client(get_settings()), since=args.since)
    except TollboothError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 1
    print(" ".join(f"{kind}s={n}" for kind, n in totals.items()))
    return 0


def register(subparsers: Any) -> None:
    """Adds `stripe sync [--since DATE]` to the `tollbooth` command."""
    stripe = subparsers.add_parser("stripe", help="the Stripe mirror").add_subparsers(dest="stripe_command",
                                                                                      required=True)
    sync = stripe.add_parser("sync", help="backfill products, prices, customers and subscriptions from the API")
    sync.add_argument("--since", type=parse_date, default=None,
                      help="only objects created on or after this date (YYYY-MM-DD, UTC)")
    sync.set_defaults(func=cmd_stripe_sync)
