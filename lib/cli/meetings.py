"""`tollbooth meetings reconcile [--since DATE]` (fill gaps from Daily's REST API after
a webhook outage) and `tollbooth rooms rotate-key` (re-seal every room's sensitive
fields with the first key of ROOMS_ENCRYPTION_KEYS; resumable). Counts on stdout."""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from lib.cli.common import use_local_database_unless_configured
from lib.cli.stripe import parse_date
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.errors import TollboothError
from lib.meetings.daily_api import make_client
from lib.meetings.reconcile import reconcile
from lib.meetings.room_state import keyring, new_key_spec, rotate


def cmd_reconcile(args: argparse.Namespace) -> int:
    use_local_database_unless_configured(args)
    since = dt.datetime.fromtimestamp(args.since, dt.UTC) if args.since is not None else None
    try:
        totals = reconcile(get_database(), make_client(get_settings()), since=since)
    except TollboothError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={v}" for k, v in totals.items()))
    return 1 if totals["failed"] else 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    if args.new_key:
        print(new_key_spec(args.new_key))
        return 0
    use_local_database_unless_configured(args)
    try:
        totals = rotate(get_database(), keyring(get_settings()), batch=args.batch)
    except TollboothError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={v}" for k, v in totals.items()))
    return 1 if totals["failed"] else 0


def register(subparsers: Any) -> None:
    """Adds `meetings reconcile` and `rooms rotate-key` to the `tollbooth` command."""
    meetings = subparsers.add_parser("meetings", help="Daily meetings").add_subparsers(
        dest="meetings_command", required=True)
    rec = meetings.add_parser("reconcile", help="re-read incomplete meetings from Daily's REST API")
    rec.add_argument("--since", type=parse_date, default=None,
                     help="only meetings created on or after this date (YYYY-MM-DD, UTC)")
    rec.set_defaults(func=cmd_reconcile)
    rooms = subparsers.add_parser("rooms", help="room state").add_subparsers(dest="rooms_command", required=True)
    rot = rooms.add_parser("rotate-key", help="re-seal every room with the first key of ROOMS_ENCRYPTION_KEYS")
    rot.add_argument("--batch", type=int, default=100, help="rooms per round trip (default %(default)s)")
    rot.add_argument("--new-key", metavar="KID", default=None,
                     help="print a fresh KID:base64key entry to put first in ROOMS_ENCRYPTION_KEYS, and exit")
    rot.set_defaults(func=cmd_rotate_key)
