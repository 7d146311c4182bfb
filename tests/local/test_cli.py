"""The `tollbooth` CLI as a newcomer uses it: db start/stop, migrate, token, admin."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import psycopg
import pytest

from tests.support.secrets import JWT_SECRET

TB = [sys.executable, "-m", "lib.cli"]


def run(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SUPABASE_URL")}
    e.update(env or {})
    return subprocess.run([*TB, *args], capture_output=True, text=True, env=e, check=check, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("cli") / "pg")
    out = run("db", "start", "--data-dir", data_dir, "--fresh")
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("DATABASE_URL="), f"last line names the DSN: {out.stdout}"
    yield data_dir, last.split("=", 1)[1]
    run("db", "stop", "--data-dir", data_dir)


def test_db_start_migrates_and_seeds_then_reuses(cli_db):
    data_dir, dsn = cli_db
    with psycopg.connect(dsn) as c:
        assert c.execute("select count(*) from auth.users where email like '%%@example.com'").fetchone()[0] == 2
    again = run("db", "start", "--data-dir", data_dir)
    assert again.stdout.strip().splitlines()[-1] == f"DATABASE_URL={dsn}", "a second start reuses the running server"
    assert "migrations applied: 0" in again.stderr


def test_migrate_applies_nothing_new(cli_db):
    _, dsn = cli_db
    out = run("migrate", "--database-url", dsn)
    assert out.stdout.strip().endswith("0 migration(s) applied")


def test_token_mints_a_verifiable_jwt(cli_db):
    _, dsn = cli_db
    out = run("token", "--email", "alice@example.com", env={"DATABASE_URL": dsn, "SUPABASE_JWT_SECRET": JWT_SECRET})
    claims = jwt.decode(out.stdout.strip(), JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["email"] == "alice@example.com" and claims["role"] == "authenticated"
    missing = run("token", "--email", "nobody@example.com", env={"DATABASE_URL": dsn}, check=False)
    assert missing.returncode == 1 and "no user" in missing.stderr


def test_admin_grant_and_revoke(cli_db):
    _, dsn = cli_db
    out = run("admin", "grant", "bob@example.com", env={"DATABASE_URL": dsn})
    assert "is now admin" in out.stdout
    with psycopg.connect(dsn) as c:
        assert c.execute("select role from profiles where email = 'bob@example.com'").fetchone()[0] == "admin"
    run("admin", "revoke", "bob@example.com", env={"DATABASE_URL": dsn})
    with psycopg.connect(dsn) as c:
        assert c.execute("select role from profiles where email = 'bob@example.com'").fetchone()[0] == "user"
    missing = run("admin", "grant", "nobody@example.com", env={"DATABASE_URL": dsn}, check=False)
    assert missing.returncode == 1


def test_db_stop_stops_it(tmp_path):
    data_dir = str(tmp_path / "pg")
    run("db", "start", "--data-dir", data_dir, "--no-seed")
    assert run("db", "stop", "--data-dir", data_dir).stdout.strip() == "stopped"
    assert run("db", "stop", "--data-dir", data_dir).stdout.strip() == "not running"


def test_serve_runs_every_function_under_uvicorn(fresh_dsn):
    """`tollbooth serve` (uvicorn workers) answers health and routes chat like the in-process server."""
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("SUPABASE_URL",)}
    env.update(DATABASE_URL=fresh_dsn, SUPABASE_JWT_SECRET=JWT_SECRET, LOG_LEVEL="WARNING")
    proc = subprocess.Popen([*TB, "serve", "--port", str(port), "--workers", "2", "--threads", "4"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["database"] == "reachable"
        chat = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []})
        assert chat.status_code in (401, 503), "the chat route is mounted (no credentials: refused, never 404)"
        assert httpx.get(f"http://127.0.0.1:{port}/nope").status_code == 404
    finally:
        proc.terminate()
        proc.wait(15)
