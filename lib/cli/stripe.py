"""`tollbooth stripe sync [--since DATE]`: backfill the Stripe mirror from the API
(see `lib.billing.backfill`). Progress on stderr, counts on stdout."""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from lib.billing.api import make_client
from lib.billing.backfill import backfill
from lib.cli.common import use_local_database_unless_configured
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.errors import MissingSetting, TollboothError


def parse_date(value: str) -> int:
    """A date (YYYY-MM-DD, UTC) or ISO timestamp as epoch seconds."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def cmd_stripe_sync(args: argparse.Namespace) -> int:
    use_local_database_unless_configured(args)
    try:
        totals = backfill(get_database(), make_client(get_settings()), since=args.since)
    except MissingSetting:
        raise  # `tollbooth` says which setting the command needs
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
