"""`tollbooth dev` (= `make dev`): the whole local stack in one terminal."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from lib.config import reset_settings

DEMO_OWNER = "alice@example.com"
DEMO_MEMBER = "bob@example.com"
# seeded by supabase/seed.sql: 'xan_' || sha256('tollbooth-local-demo-key')
DEMO_API_KEY = "xan_" + __import__("hashlib").sha256(b"tollbooth-local-demo-key").hexdigest()


def run(args) -> int:
    from lib import embedded, log, migrate
    from lib.auth import mint_access_token
    from lib.cli import LOCAL_JWT_SECRET, _user_by_email
    from lib.server import build_server

    print("==> starting the embedded Postgres", flush=True)
    dsn = os.environ.get("DATABASE_URL") or embedded.start(Path(args.data_dir))
    print("==> applying the local bootstrap, migrations and seed", flush=True)
    report = migrate.apply_all(dsn)
    print(f"    {len(report.applied)} new migration(s); seed applied", flush=True)
    os.environ["DATABASE_URL"] = dsn
    os.environ.setdefault("SUPABASE_JWT_SECRET", LOCAL_JWT_SECRET)
    os.environ.setdefault("CRON_SECRET", "local-cron-secret")
    extra = _start_side_services(args)
    reset_settings()
    log.configure(os.environ.get("LOG_LEVEL", "WARNING"))

    server = build_server(args.host, args.port)
    base = f"http://{args.host}:{args.port}"
    owner = _user_by_email(dsn, DEMO_OWNER)
    jwt = mint_access_token(owner[0], owner[1], os.environ["SUPABASE_JWT_SECRET"], ttl=24 * 3600)
    lines = [
        "",
        "Tollbooth is running.",
        f"  functions     {base}",
        f"  DATABASE_URL  {dsn}",
        f"  psql          psql '{dsn}'",
        "",
        f"Demo users: {DEMO_OWNER} (owner of the Acme team org), {DEMO_MEMBER} (member).",
        f"A signed-in JWT for {DEMO_OWNER}, valid 24 h:",
        f"  export TOKEN={jwt}",
        "",
        "Try:",
        f"  curl -s {base}/api/health",
        *extra,
        "",
        "Mint a token for another user:  .venv/bin/tollbooth token --email bob@example.com",
        "Stop with Ctrl-C (the database keeps running; `.venv/bin/tollbooth db stop` stops it).",
    ]
    print("\n".join(lines), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nbye", file=sys.stderr)
    return 0


def _start_side_services(args) -> list[str]:
    """The fake OpenAI upstream when no real key is set, and the chat examples."""
    base = f"http://{args.host}:{args.port}"
    lines = []
    if not os.environ.get("OPENAI_API_KEY"):
        from lib.fake_openai import FakeOpenAI

        fake = FakeOpenAI(latency_ms=20)
        upstream = fake.start(args.host, 0)
        os.environ["OPENAI_BASE_URL"] = upstream
        os.environ["OPENAI_API_KEY"] = "sk-fake-local"
        lines.append(f"  (no OPENAI_API_KEY set: chat goes to the fake OpenAI upstream at {upstream})")
    lines += [
        f"  curl -s {base}/v1/chat/completions -H 'authorization: Bearer {DEMO_API_KEY}' \\",
        "       -H 'content-type: application/json' \\",
        "       -d '{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"user\", \"content\": \"hello\"}]}'",
        f"  curl -s {base}/v1/chat/completions -H \"authorization: Bearer $TOKEN\" \\",
        "       -H 'content-type: application/json' \\",
        "       -d '{\"model\": \"gpt-4o-mini\", \"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}'",
        "",
        f"Demo API key of the Acme org (seeded; local only): {DEMO_API_KEY}",
        f"OpenAI SDK: OpenAI(base_url=\"{base}/v1\", api_key=\"{DEMO_API_KEY}\")",
    ]
    return lines
