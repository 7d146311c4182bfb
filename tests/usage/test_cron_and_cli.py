"""GET/POST /api/cron/usage-rollup (CRON_SECRET, constant-time; 503 naming it when
unset) and `tollbooth rollup [--rebuild FROM TO]` / `tollbooth lifecycle`."""
from __future__ import annotations

import datetime as dt
import json

import httpx
import psycopg
import pytest

from lib.cli import main
from lib.core.db import set_database
from tests.support.pg import scalar
from tests.support.server import env, running_server
from tests.support.usage import add_event, rolled, truth

CRON_SECRET = "cron-secret-for-tests-0123456789"


def test_cron_needs_its_secret(committed):
    with psycopg.connect(committed.dsn, autocommit=True) as c:
        add_event(c, committed.org, credits=5)
        with running_server(DATABASE_URL=committed.dsn, SUPABASE_URL=None, CRON_SECRET=None,
                            STRIPE_SECRET_KEY=None) as base:
            r = httpx.get(f"{base}/api/cron/usage-rollup", timeout=30)
            assert r.status_code == 503 and "CRON_SECRET" in r.json()["error"]["message"]
        with running_server(DATABASE_URL=committed.dsn, SUPABASE_URL=None, CRON_SECRET=CRON_SECRET,
                            STRIPE_SECRET_KEY=None) as base:
            url = f"{base}/api/cron/usage-rollup"
            assert httpx.get(url, timeout=30).status_code == 401
            assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
            assert httpx.get(url, headers={"Authorization": CRON_SECRET}, timeout=30).status_code == 401
            assert scalar(c, "select count(*) from public.usage_daily") == 0, "a refused call ran nothing"
            r = httpx.get(url, headers={"Authorization": f"Bearer {CRON_SECRET}"}, timeout=60)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["rollup"]["events"] == 1 and body["lifecycle"]["skipped"] is False
            assert body["lifecycle"]["stripe_meters"] == {"skipped": "STRIPE_SECRET_KEY is not set"}
            assert {"released_reservations", "expired_grants", "periods_started", "api_requests_deleted",
                    "partitions_ahead", "partitions_dropped"} <= set(body["lifecycle"])
            r = httpx.post(url, headers={"Authorization": f"Bearer {CRON_SECRET}"}, timeout=60)
            assert r.status_code == 200 and r.json()["rollup"]["events"] == 0
        assert rolled(c) == truth(c)


def run_cli(dsn: str, capsys, *argv: str) -> tuple[int, dict]:
    with env(DATABASE_URL=dsn, SUPABASE_URL=None, STRIPE_SECRET_KEY=None):
        set_database(None)
        try:
            code = main(list(argv))
        finally:
            set_database(None)
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


def test_tollbooth_rollup_rebuild_and_lifecycle(committed, capsys):
    today = dt.datetime.now(dt.UTC)
    with psycopg.connect(committed.dsn, autocommit=True) as c:
        add_event(c, committed.org, at=today - dt.timedelta(days=2), credits=3)
        add_event(c, committed.org, at=today, credits=4)
        code, out = run_cli(committed.dsn, capsys, "rollup")
        assert code == 0 and out["events"] == 2 and out["skipped"] is False
        incremental = rolled(c)
        first = (today - dt.timedelta(days=3)).date().isoformat()
        code, out = run_cli(committed.dsn, capsys, "rollup", "--rebuild", first, today.date().isoformat())
        assert code == 0 and out["rebuilt_days"] == 4 and out["events"] == 2
        assert rolled(c) == incremental == truth(c)
        code, out = run_cli(committed.dsn, capsys, "lifecycle")
        assert code == 0 and out["skipped"] is False and "stripe_meters" in out


def test_tollbooth_rollup_refuses_bad_dates(committed, capsys):
    with pytest.raises(SystemExit):
        run_cli(committed.dsn, capsys, "rollup", "--rebuild", "yesterday", "today")
    code, _ = run_cli(committed.dsn, capsys, "rollup", "--rebuild", "2026-02-02", "2026-02-01")
    assert code == 1
