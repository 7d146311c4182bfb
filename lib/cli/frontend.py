"""What a frontend does, from the terminal, exactly as PostgREST runs it for a signed-in
user: `sql --as` (RLS as that user), `keys create|list|revoke|rotate`, `credits`, `usage`.

Every command goes through the tables and RPCs supabase-js would call, as the user
(`--as`, by default the organization's owner), never by writing tables directly; see
lib/local/postgrest_session.py for the per-request protocol."""
from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg

from lib.cli import keys as unkey_keys
from lib.cli.common import database_url
from lib.core.errors import TollboothError
from lib.local.postgrest_session import (
    ANON,
    Identity,
    Session,
    SessionError,
    format_table,
    org_by_slug,
    owner_email,
    personal_org,
    signed_in,
    split_statements,
)


def _identity(conn: psycopg.Connection, args: argparse.Namespace, org_id: Any = None) -> Identity:
    if getattr(args, "anon", False):
        return ANON
    email = args.as_email or (owner_email(conn, org_id) if org_id is not None else None)
    if not email:
        raise SessionError("say who runs the query: --as EMAIL, --org SLUG (its owner) or --anon")
    return signed_in(conn, email)


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def _print(result_columns: list[str], rows: list[tuple[Any, ...]], status: str) -> None:
    if result_columns:
        print(format_table(result_columns, rows))
    else:
        print(status)


def cmd_sql(args: argparse.Namespace) -> int:
    dsn = database_url(args)
    try:
        with psycopg.connect(dsn) as conn:
            org = org_by_slug(conn, args.org) if args.org else None
            who = _identity(conn, args, org[0] if org else None)
    except SessionError as exc:
        return _fail(exc)
    params = {"org": str(org[0])} if org else None
    banner = (f"-- as {who.label} (role {who.role}{', org ' + org[1] + ' as %(org)s' if org else ''}); "
              f"each statement is one PostgREST request, {'committed' if args.commit else 'rolled back'}")
    failed = 0
    with Session(dsn, who, commit=args.commit) as session:
        if args.command_sql is not None:
            statements = split_statements(args.command_sql)
            interactive = False
        else:
            interactive = sys.stdin.isatty()
            statements = []
        if interactive:
            print(banner + "\n-- end each statement with ';', Ctrl-D to quit", file=sys.stderr)
        else:
            print(banner, file=sys.stderr)

        def run(stmt: str) -> None:
            nonlocal failed
            try:
                result = session.run(stmt, params if params and "%(org)s" in stmt else None)
            except SessionError as exc:
                failed += 1
                print(f"ERROR: {exc}", file=sys.stderr)
                return
            for note in result.notices:
                print(f"NOTICE: {note}", file=sys.stderr)
            _print(result.columns, result.rows, result.status)

        if args.command_sql is not None:
            for stmt in statements:
                run(stmt)
        else:
            buffer = ""
            while True:
                if interactive:
                    print(f"{who.label}=> " if not buffer.strip() else "... ", end="", file=sys.stderr, flush=True)
                line = sys.stdin.readline()
                if not line:
                    break
                buffer += line
                if buffer.rstrip().endswith(";"):
                    for stmt in split_statements(buffer):
                        run(stmt)
                    buffer = ""
            for stmt in split_statements(buffer):
                run(stmt)
    return 1 if failed else 0


def _org_session(args: argparse.Namespace, org_arg: str) -> tuple[Session, Any, str]:
    dsn = database_url(args)
    with psycopg.connect(dsn) as conn:
        if "@" in org_arg:
            org_id, slug = personal_org(conn, org_arg)
            who = signed_in(conn, args.as_email or org_arg)
        else:
            org_id, slug = org_by_slug(conn, org_arg)
            who = _identity(conn, args, org_id)
    return Session(dsn, who, commit=True), org_id, slug


def cmd_keys_create(args: argparse.Namespace) -> int:
    try:
        session, org_id, slug = _org_session(args, args.org)
        with session:
            key = session.one("select public.create_api_key(org_id := %s, name := %s, description := %s, "
                              "expires_at := %s)", (org_id, args.name, args.description, args.expires_at))
    except SessionError as exc:
        return _fail(exc)
    try:
        unkey_id = unkey_keys.unkey_created(args, str(key["id"]))
    except TollboothError as exc:
        return _fail(Exception(f"Unkey: {exc.message}; the key was not created"))
    if unkey_id:
        print(f"mirrored at Unkey as {unkey_id}", file=sys.stderr)
    print(f"created key {key['id']} ({key['prefix']}…) for {slug} as {session.identity.label}", file=sys.stderr)
    print("the key is shown once; store it now:", file=sys.stderr)
    print(key["key"])
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    try:
        session, org_id, _ = _org_session(args, args.org)
        with session:
            r = session.run("select id, name, prefix, status, created_at, last_used_at, usage_count, expires_at "
                            "from public.api_keys where org_id = %s order by created_at", (org_id,))
    except SessionError as exc:
        return _fail(exc)
    _print(r.columns, r.rows, r.status)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    try:
        session, org_id, _ = _org_session(args, args.org)
        with session:
            key_id = find_key(session, org_id, args.key)
            answer = session.one("select public.revoke_api_key(%s)", (key_id,))
    except SessionError as exc:
        return _fail(exc)
    print(f"revoked {key_id}: {answer}")
    return unkey_keys.unkey_revoked(args, str(key_id))


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    try:
        session, org_id, _ = _org_session(args, args.org)
        with session:
            key_id = find_key(session, org_id, args.key)
            new = session.one("select public.rotate_api_key(%s, %s)", (key_id, args.grace_seconds))
    except SessionError as exc:
        return _fail(exc)
    print(f"rotated {key_id}: the old secret works for {args.grace_seconds} s more; the new one is shown once:",
          file=sys.stderr)
    print(new["key"])
    return unkey_keys.unkey_rotated(args, str(key_id), args.grace_seconds)


def find_key(session: Session, org_id: Any, key: str) -> Any:
    """The id of the organization's key named by its id or display prefix, as the user sees it."""
    ids = session.run("select id from public.api_keys where org_id = %s and (id::text = %s or prefix = %s)",
                      (org_id, key, key)).rows
    if len(ids) != 1:
        raise SessionError(f"{'no' if not ids else 'more than one'} key {key} in this organization "
                           f"visible to {session.identity.label}")
    return ids[0][0]


def cmd_credits(args: argparse.Namespace) -> int:
    try:
        session, org_id, slug = _org_session(args, args.target)
        with session:
            bal = session.run("select remaining as balance, reserved as held_by_open_requests, plan_remaining, "
                              "period_start, period_end from public.credit_balances where org_id = %s", (org_id,))
            ledger = session.run("select created_at, kind, amount, balance_after, request_id, description "
                                 "from public.credit_ledger where org_id = %s order by id desc limit %s",
                                 (org_id, args.limit))
    except SessionError as exc:
        return _fail(exc)
    print(f"credits of {slug} as {session.identity.label}")
    _print(bal.columns, bal.rows, bal.status)
    print(f"\nlast {args.limit} ledger rows")
    _print(ledger.columns, ledger.rows, ledger.status)
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    try:
        session, org_id, slug = _org_session(args, args.org)
        with session:
            r = session.run(
                "select created_at::date as day, model, count(*) as requests, sum(prompt_tokens) as prompt_tokens, "
                "sum(completion_tokens) as completion_tokens, sum(credits) as credits, sum(cost_usd) as cost_usd "
                "from public.usage_events where org_id = %s and created_at >= now() - make_interval(days => %s) "
                "group by 1, 2 order by 1 desc, 2", (org_id, args.days))
    except SessionError as exc:
        return _fail(exc)
    print(f"usage of {slug} over the last {args.days} days, as {session.identity.label}")
    _print(r.columns, r.rows, r.status)
    return 0


def register(sub: Any) -> None:
    def who(p: argparse.ArgumentParser) -> None:
        p.add_argument("--as", dest="as_email", metavar="EMAIL",
                       help="the signed-in user to act as (default: the organization's owner)")
        p.add_argument("--database-url", help="the database (default: DATABASE_URL, else the local embedded one)")

    s = sub.add_parser("sql", help="run SQL as PostgREST runs it for a signed-in user (RLS applies)",
                       description="Each statement runs as one PostgREST request: role and JWT claims set "
                                   "transaction-locally, then the statement, then a rollback (unless --commit). "
                                   "Without -c, statements are read from stdin (interactive on a terminal).")
    s.add_argument("--anon", action="store_true", help="run as the anonymous role (not signed in)")
    who(s)
    s.add_argument("--org", metavar="SLUG",
                   help="an organization: %%(org)s in a query is its id, and --as defaults to its owner")
    s.add_argument("-c", dest="command_sql", metavar="QUERY", help="run this query (or ;-separated queries) and exit")
    s.add_argument("--commit", action="store_true", help="commit each statement instead of rolling it back")
    s.set_defaults(func=cmd_sql)

    k = sub.add_parser("keys", help="API keys of an organization, through the frontend's RPCs")
    ks = k.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", help="create a key (public.create_api_key); prints it once")
    c.add_argument("org", metavar="ORG", help="the organization's slug (or a user's email: their personal org)")
    c.add_argument("--name", required=True, help="the key's name")
    c.add_argument("--description", help="a longer description")
    c.add_argument("--expires-at", metavar="TIMESTAMP", help="when the key expires (ISO 8601; default never)")
    who(c)
    c.set_defaults(func=cmd_keys_create)
    li = ks.add_parser("list", help="the organization's keys as its member sees them (never the hash)")
    li.add_argument("org", metavar="ORG", help="the organization's slug (or a user's email: their personal org)")
    who(li)
    li.set_defaults(func=cmd_keys_list)
    rv = ks.add_parser("revoke", help="revoke a key (public.revoke_api_key)")
    rv.add_argument("org", metavar="ORG", help="the organization's slug (or a user's email: their personal org)")
    rv.add_argument("key", metavar="KEY", help="the key's id or its display prefix")
    who(rv)
    rv.set_defaults(func=cmd_keys_revoke)
    ro = ks.add_parser("rotate", help="rotate a key (public.rotate_api_key); prints the new secret once")
    ro.add_argument("org", metavar="ORG", help="the organization's slug (or a user's email: their personal org)")
    ro.add_argument("key", metavar="KEY", help="the key's id or its display prefix")
    ro.add_argument("--grace-seconds", type=int, default=3600, help="how long the old secret keeps working")
    who(ro)
    ro.set_defaults(func=cmd_keys_rotate)
    unkey_keys.register(ks)

    cr = sub.add_parser("credits", help="balance, credits held by open requests, last ledger rows")
    cr.add_argument("target", metavar="EMAIL|ORG", help="a user's email (their personal org) or an organization slug")
    cr.add_argument("--limit", type=int, default=10, help="ledger rows to show (default %(default)s)")
    who(cr)
    cr.set_defaults(func=cmd_credits)

    us = sub.add_parser("usage", help="usage per day and model, as the usage page reads it")
    us.add_argument("org", metavar="ORG", help="the organization's slug (or a user's email: their personal org)")
    us.add_argument("--days", type=int, default=30, help="how many days back (default %(default)s)")
    who(us)
    us.set_defaults(func=cmd_usage)
