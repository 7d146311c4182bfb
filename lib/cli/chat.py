"""`tollbooth chat drain-outbox`: settle the chat proxy's calls that could not be
settled when they ended (the database was away) and were kept in the outbox
(`METERING_OUTBOX_DIR`). Safe to run any time, alongside a running server: settlement
is idempotent by request id. Exit 0 when the outbox is empty afterwards."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from lib.chat.settlement import drain_outbox
from lib.cli.common import use_local_database_unless_configured
from lib.core.config import get_settings
from lib.core.db import get_database


def cmd_drain_outbox(args: argparse.Namespace) -> int:
    use_local_database_unless_configured(args)
    settings = get_settings()
    if args.outbox_dir:
        settings = settings.model_copy(update={"metering_outbox_dir": args.outbox_dir})
    settled, failed, pending = drain_outbox(settings, get_database())
    print(f"settled={settled} failed={failed} pending={pending} outbox={settings.metering_outbox_dir}")
    if failed:
        print(f"{failed} call(s) could not be settled for good: see {settings.metering_outbox_dir}/failed",
              file=sys.stderr)
    return 0 if pending == 0 and failed == 0 else 1


def register(subparsers: Any) -> None:
    chat = subparsers.add_parser("chat", help="the metered chat proxy's maintenance tasks")
    sub = chat.add_subparsers(dest="chat_command", required=True)
    drain = sub.add_parser("drain-outbox", help="settle the calls kept in the metering outbox")
    drain.add_argument("--outbox-dir", default=None, help="default: METERING_OUTBOX_DIR or .tollbooth/outbox")
    drain.set_defaults(func=cmd_drain_outbox)
