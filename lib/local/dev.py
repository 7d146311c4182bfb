"""`tollbooth dev` (= `make dev`): the whole local stack in one terminal."""
from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import psycopg

from lib.core import log
from lib.core.auth import mint_access_token
from lib.core.config import reset_settings
from lib.core.server import Mount, build_server
from lib.local import embedded, migrate
from lib.local.stack import LOCAL_JWT_SECRET, user_by_email

DEMO_OWNER = "alice@example.com"
DEMO_MEMBER = "bob@example.com"


def demo_api_key(dsn: str) -> str:
    """The key supabase/seed.sql gives the Acme org: the prefix, then sha256 of a phrase."""
    with psycopg.connect(dsn) as conn:
        prefix = migrate.api_key_prefix(conn)
    return prefix + hashlib.sha256(b"tollbooth-local-demo-key").hexdigest()


def run(host: str, port: int, data_dir: str, mounts: Iterable[Mount]) -> int:
    print("==> starting the embedded Postgres", flush=True)
    dsn = os.environ.get("DATABASE_URL") or embedded.start(Path(data_dir))
    print("==> applying the local bootstrap, migrations and seed", flush=True)
    report = migrate.apply_all(dsn)
    print(f"    {len(report.applied)} new migration(s); seed applied", flush=True)
    os.environ["DATABASE_URL"] = dsn
    os.environ.setdefault("SUPABASE_JWT_SECRET", LOCAL_JWT_SECRET)
    os.environ.setdefault("CRON_SECRET", "local-cron-secret")
    extra = _start_side_services(host, port, demo_api_key(dsn))
    reset_settings()
    log.configure(os.environ.get("LOG_LEVEL", "WARNING"))

    server = build_server(host, port, mounts)
    base = f"http://{host}:{port}"
    owner = user_by_email(dsn, DEMO_OWNER)
    if owner is None:
        print(f"error: the seed has no {DEMO_OWNER}", file=sys.stderr)
        return 1
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
        server.serve_forever()  # werkzeug's returns (does not raise) on Ctrl-C
    except KeyboardInterrupt:
        pass
    print("\nbye", flush=True)
    return 0


def _start_side_services(host: str, port: int, key: str) -> list[str]:
    """The fake OpenAI upstream when no real key is set, and the chat examples."""
    base = f"http://{host}:{port}"
    lines = []
    if not os.environ.get("OPENAI_API_KEY"):
        from lib.local.fake_openai import FakeOpenAI

        fake = FakeOpenAI(latency_ms=20)
        upstream = fake.start(host, 0)
        os.environ["OPENAI_BASE_URL"] = upstream
        os.environ["OPENAI_API_KEY"] = "sk-fake-local"
        lines.append(f"  (no OPENAI_API_KEY set: chat goes to the fake OpenAI upstream at {upstream})")
    lines += _fake_daily(host, base)
    lines += [
        f"  curl -s {base}/v1/chat/completions -H 'authorization: Bearer {key}' \\",
        "       -H 'content-type: application/json' \\",
        "       -d '{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"user\", \"content\": \"hello\"}]}'",
        f"  curl -s {base}/v1/chat/completions -H \"authorization: Bearer $TOKEN\" \\",
        "       -H 'content-type: application/json' \\",
        "       -d '{\"model\": \"gpt-4o-mini\", \"stream\": true, "
        "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}'",
        "",
        f"Demo API key of the Acme org (seeded; local only): {key}",
        f"OpenAI SDK: OpenAI(base_url=\"{base}/v1\", api_key=\"{key}\")",
    ]
    return lines


LOCAL_DAILY_WEBHOOK_SECRET = "dG9sbGJvb3RoLWxvY2FsLWRhaWx5LXdlYmhvb2stc2VjcmV0"  # base64, local only
LOCAL_ROOMS_KEY = "local1:" + "bG9jYWwtcm9vbXMta2V5LTMyLWJ5dGVzLWxvbmchISE="  # 32 bytes, local only


def _fake_daily(host: str, base: str) -> list[str]:
    """The fake Daily REST API when no DAILY_API_KEY is set; it delivers the webhooks of
    the meetings it simulates to this server."""
    os.environ.setdefault("DAILY_WEBHOOK_SECRET", LOCAL_DAILY_WEBHOOK_SECRET)
    os.environ.setdefault("ROOMS_ENCRYPTION_KEYS", LOCAL_ROOMS_KEY)
    if os.environ.get("DAILY_API_KEY"):
        return []
    from lib.local.fake_daily import FakeDaily

    fake = FakeDaily(webhook_url=f"{base}/api/daily/webhook", webhook_secret=os.environ["DAILY_WEBHOOK_SECRET"])
    daily = fake.start(host, 0)
    os.environ["DAILY_API_URL"] = daily
    os.environ["DAILY_API_KEY"] = "fake-daily-local"
    return [
        f"  (no DAILY_API_KEY set: meetings use the fake Daily API at {daily})",
        f"  curl -s {base}/api/meetings -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\",
        "       -d '{\"org_id\": \"00000000-0000-4000-8000-00000000ac3e\", \"name\": \"demo-room\"}'",
        f"  curl -s -X POST {daily}/_fake/rooms/demo-room/simulate -H 'authorization: Bearer x'"
        "   # plays a meeting, delivers its webhooks",
    ]
