"""The local stack's commands: `dev`, `db start|stop`, `migrate`, `token`, `admin`,
`fake-openai`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import psycopg

from functions import mounts
from lib.cli.common import NoDatabase, database_url
from lib.core.auth import mint_access_token
from lib.local import dev, embedded, migrate
from lib.local.fake_openai import FakeOpenAI
from lib.local.stack import LOCAL_JWT_SECRET, user_by_email


def cmd_dev(args: argparse.Namespace) -> int:
    return dev.run(args.host, args.port, args.data_dir, mounts())


def cmd_db_start(args: argparse.Namespace) -> int:
    dsn = embedded.start(Path(args.data_dir), fresh=args.fresh)
    report = migrate.apply_all(dsn, seed=not args.no_seed)
    print(f"bootstrap: {'applied' if report.bootstrapped else 'skipped (Supabase database)'}", file=sys.stderr)
    print(f"migrations applied: {len(report.applied)}" + "".join(f"\n  {n}" for n in report.applied), file=sys.stderr)
    print(f"seed: {'applied' if report.seeded else 'skipped'}", file=sys.stderr)
    print(f"DATABASE_URL={dsn}")
    return 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    stopped = embedded.stop(Path(args.data_dir))
    print("stopped" if stopped else "not running")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    dsn = database_url(args, migrate=False)  # migrating is this command's job: count what it applies
    try:
        report = migrate.apply_all(dsn, seed=args.seed)
    except migrate.MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in report.applied:
        print(f"applied {name}")
    print(f"{len(report.applied)} migration(s) applied")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    try:  # never starts or seeds a database
        row = user_by_email(database_url(args, start=False), args.email)
    except (NoDatabase, psycopg.OperationalError) as exc:
        print(f"error: {exc}".rstrip(), file=sys.stderr)
        return 1
    if not row:
        print(f"error: no user with email {args.email}", file=sys.stderr)
        return 1
    secret = os.environ.get("SUPABASE_JWT_SECRET", LOCAL_JWT_SECRET)
    print(mint_access_token(row[0], row[1], secret, ttl=args.ttl))
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    role = "admin" if args.action == "grant" else "user"
    with psycopg.connect(database_url(args)) as conn:
        row = conn.execute(
            "update public.profiles set role = %s where lower(email) = lower(%s) and role <> 'banned' "
            "returning email, role", (role, args.email)).fetchone()
    if not row:
        print(f"error: no active profile with email {args.email}", file=sys.stderr)
        return 1
    print(f"{row[0]} is now {row[1]}")
    return 0


def cmd_fake_openai(args: argparse.Namespace) -> int:
    fake = FakeOpenAI(latency_ms=args.latency_ms, chunk_delay_ms=args.chunk_delay_ms)
    try:
        fake.serve_forever(args.host, args.port)  # prints where it listens
    except KeyboardInterrupt:
        pass
    return 0


def register(sub: Any) -> None:
    d = sub.add_parser("dev", help="start everything locally and print how to use it")
    d.add_argument("--host", default="127.0.0.1", help="address to serve on (default %(default)s)")
    d.add_argument("--port", type=int, default=8787, help="port to serve on (default %(default)s)")
    d.set_defaults(func=cmd_dev)

    db = sub.add_parser("db", help="the embedded Postgres").add_subparsers(dest="db_command", required=True)
    s = db.add_parser("start", help="start or reuse it, migrate, seed; prints DATABASE_URL=<dsn> last")
    s.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS,
                   help="the data directory (default: tollbooth's --data-dir)")
    s.add_argument("--fresh", action="store_true", help="delete the data directory first")
    s.add_argument("--no-seed", action="store_true", help="do not apply supabase/seed.sql (demo users, keys)")
    s.set_defaults(func=cmd_db_start)
    t = db.add_parser("stop", help="stop it")
    t.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS,
                   help="the data directory (default: tollbooth's --data-dir)")
    t.set_defaults(func=cmd_db_stop)

    m = sub.add_parser("migrate", help="apply the local bootstrap (plain Postgres), migrations and, "
                                       "with --seed, the seed")
    m.add_argument("--database-url", help="the database (default: DATABASE_URL, else the local embedded one)")
    m.add_argument("--seed", action="store_true", help="also apply supabase/seed.sql (demo data; local only)")
    m.set_defaults(func=cmd_migrate)

    tk = sub.add_parser("token", help="mint a local access token for a user (local use only)")
    tk.add_argument("--email", required=True, help="the user's email (must exist in auth.users)")
    tk.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default %(default)s)")
    tk.add_argument("--database-url", help="the database (default: DATABASE_URL, else the running local one)")
    tk.set_defaults(func=cmd_token)

    fk = sub.add_parser("fake-openai", help="a local OpenAI-compatible upstream (development, benchmarks)")
    fk.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    fk.add_argument("--port", type=int, default=8788, help="port to listen on (default %(default)s)")
    fk.add_argument("--latency-ms", type=int, default=0, help="delay before each answer (default %(default)s)")
    fk.add_argument("--chunk-delay-ms", type=int, default=0,
                    help="delay between streamed chunks (default %(default)s)")
    fk.set_defaults(func=cmd_fake_openai)

    ad = sub.add_parser("admin", help="platform admins").add_subparsers(dest="action", required=True)
    for action in ("grant", "revoke"):
        a = ad.add_parser(action, help=f"{action} platform admin rights")
        a.add_argument("email", help="the user's email")
        a.add_argument("--database-url", help="the database (default: DATABASE_URL, else the local embedded one)")
        a.set_defaults(func=cmd_admin)
