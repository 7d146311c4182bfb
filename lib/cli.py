"""`tollbooth`: the local stack (embedded Postgres, migrations, seed, server) and admin tasks."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lib import stripe_cli
from lib.config import DEFAULT_DATA_DIR, reset_settings

LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


def _default_dsn(data_dir: str) -> str:
    from lib import embedded, migrate

    dsn = embedded.start(Path(data_dir))
    migrate.apply_all(dsn)
    return dsn


def cmd_db_start(args) -> int:
    from lib import embedded, migrate

    dsn = embedded.start(Path(args.data_dir), fresh=args.fresh)
    report = migrate.apply_all(dsn, seed=not args.no_seed)
    print(f"bootstrap: {'applied' if report.bootstrapped else 'skipped (Supabase database)'}", file=sys.stderr)
    print(f"migrations applied: {len(report.applied)}" + "".join(f"\n  {n}" for n in report.applied), file=sys.stderr)
    print(f"seed: {'applied' if report.seeded else 'skipped'}", file=sys.stderr)
    print(f"DATABASE_URL={dsn}")
    return 0


def cmd_db_stop(args) -> int:
    from lib import embedded

    stopped = embedded.stop(Path(args.data_dir))
    print("stopped" if stopped else "not running")
    return 0


def cmd_migrate(args) -> int:
    from lib import migrate

    dsn = args.database_url or os.environ.get("DATABASE_URL") or _default_dsn(args.data_dir)
    try:
        report = migrate.apply_all(dsn, seed=args.seed)
    except migrate.MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in report.applied:
        print(f"applied {name}")
    print(f"{len(report.applied)} migration(s) applied")
    return 0


def _env_for_serve(data_dir: str) -> None:
    if not os.environ.get("DATABASE_URL") and not os.environ.get("SUPABASE_URL"):
        os.environ["DATABASE_URL"] = _default_dsn(data_dir)
    os.environ.setdefault("SUPABASE_JWT_SECRET", LOCAL_JWT_SECRET)
    reset_settings()


def cmd_serve(args) -> int:
    from lib import log
    from lib.server import serve_production

    _env_for_serve(args.data_dir)
    log.configure(os.environ.get("LOG_LEVEL", "INFO"))
    print(f"serving every function on http://{args.host}:{args.port} "
          f"({args.workers} workers x {args.threads} threads)", flush=True)
    serve_production(args.host, args.port, args.workers, args.threads)
    return 0


def _user_by_email(dsn: str, email: str):
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("select id, email from auth.users where lower(email) = lower(%s)", (email,)).fetchone()


def cmd_token(args) -> int:
    from lib.auth import mint_access_token

    dsn = os.environ.get("DATABASE_URL") or _default_dsn(args.data_dir)
    row = _user_by_email(dsn, args.email)
    if not row:
        print(f"error: no user with email {args.email}", file=sys.stderr)
        return 1
    secret = os.environ.get("SUPABASE_JWT_SECRET", LOCAL_JWT_SECRET)
    print(mint_access_token(row[0], row[1], secret, ttl=args.ttl))
    return 0


def cmd_admin(args) -> int:
    import psycopg

    dsn = os.environ.get("DATABASE_URL") or _default_dsn(args.data_dir)
    role = "admin" if args.action == "grant" else "user"
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "update public.profiles set role = %s where lower(email) = lower(%s) and role <> 'banned' "
            "returning email, role", (role, args.email)).fetchone()
    if not row:
        print(f"error: no active profile with email {args.email}", file=sys.stderr)
        return 1
    print(f"{row[0]} is now {row[1]}")
    return 0


def cmd_fake_openai(args) -> int:
    from lib.fake_openai import FakeOpenAI

    from lib.server import serve_wsgi

    fake = FakeOpenAI(latency_ms=args.latency_ms, chunk_delay_ms=args.chunk_delay_ms)
    print(f"fake OpenAI listening on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    serve_wsgi(fake.wsgi_app, args.host, args.port, workers=1, threads=32)
    return 0


def cmd_dev(args) -> int:
    from lib import dev

    return dev.run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollbooth", description=__doc__)
    p.add_argument("--data-dir", default=os.environ.get("TOLLBOOTH_DATA_DIR", DEFAULT_DATA_DIR),
                   help="embedded Postgres data directory (default %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("dev", help="start everything locally and print how to use it")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8787)
    d.set_defaults(func=cmd_dev)

    db = sub.add_parser("db", help="the embedded Postgres").add_subparsers(dest="db_command", required=True)
    s = db.add_parser("start", help="start or reuse it, migrate, seed; prints DATABASE_URL=<dsn> last")
    s.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS)
    s.add_argument("--fresh", action="store_true", help="delete the data directory first")
    s.add_argument("--no-seed", action="store_true")
    s.set_defaults(func=cmd_db_start)
    t = db.add_parser("stop", help="stop it")
    t.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS)
    t.set_defaults(func=cmd_db_stop)

    m = sub.add_parser("migrate", help="apply the local bootstrap (plain Postgres), migrations and, with --seed, the seed")
    m.add_argument("--database-url")
    m.add_argument("--seed", action="store_true")
    m.set_defaults(func=cmd_migrate)

    sv = sub.add_parser("serve", help="serve every function on one server")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8787)
    sv.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2)))
    sv.add_argument("--threads", type=int, default=16)
    sv.set_defaults(func=cmd_serve)

    tk = sub.add_parser("token", help="mint a local access token for a user (local use only)")
    tk.add_argument("--email", required=True)
    tk.add_argument("--ttl", type=int, default=3600)
    tk.set_defaults(func=cmd_token)

    fk = sub.add_parser("fake-openai", help="a local OpenAI-compatible upstream (development, benchmarks)")
    fk.add_argument("--host", default="127.0.0.1")
    fk.add_argument("--port", type=int, default=8788)
    fk.add_argument("--latency-ms", type=int, default=0)
    fk.add_argument("--chunk-delay-ms", type=int, default=0)
    fk.set_defaults(func=cmd_fake_openai)

    stripe_cli.register(sub)

    ad = sub.add_parser("admin", help="platform admins").add_subparsers(dest="action", required=True)
    for action in ("grant", "revoke"):
        a = ad.add_parser(action)
        a.add_argument("email")
        a.set_defaults(func=cmd_admin)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
