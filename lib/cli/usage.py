"""`tollbooth rollup [--rebuild FROM TO] [--wait]` and `tollbooth lifecycle`: the usage
jobs the cron runs, by hand. A progress bar on stderr when it is a terminal; one JSON
summary line on stdout at the end."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from lib.cli.common import use_local_database_unless_configured
from lib.core.config import get_settings
from lib.core.db import get_database
from lib.core.errors import MissingSetting, TollboothError
from lib.usage import jobs


def parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def progress_bar(done: int, total: int) -> None:
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} days")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _run(fn: Any) -> int:
    try:
        result = fn()
    except MissingSetting:
        raise
    except (TollboothError, ValueError) as err:
        print(f"error: {getattr(err, 'message', err)}", file=sys.stderr)
        return 1
    print(json.dumps(result, default=str, sort_keys=True))
    return 0


def cmd_rollup(args: argparse.Namespace) -> int:
    use_local_database_unless_configured(args)
    db = get_database()
    if args.rebuild:
        first, last = args.rebuild
        return _run(lambda: jobs.rebuild(db, first, last, progress_bar))
    return _run(lambda: jobs.rollup(db, wait=args.wait))


def cmd_lifecycle(args: argparse.Namespace) -> int:
    use_local_database_unless_configured(args)
    return _run(lambda: jobs.lifecycle(get_database(), get_settings()))


def register(subparsers: Any) -> None:
    """Adds `rollup` and `lifecycle` to the `tollbooth` command."""
    rollup = subparsers.add_parser("rollup", help="add usage events not yet counted to usage_daily")
    rollup.add_argument("--rebuild", nargs=2, type=parse_day, metavar=("FROM", "TO"),
                        help="recompute UTC days FROM..TO (YYYY-MM-DD) from the raw events instead")
    rollup.add_argument("--wait", action="store_true", help="wait for a running rollup instead of skipping")
    rollup.set_defaults(func=cmd_rollup)
    lifecycle = subparsers.add_parser("lifecycle", help="reservations, credit periods, retention, partitions, "
                                                         "Stripe meter reports")
    lifecycle.set_defaults(func=cmd_lifecycle)
