"""Signed Stripe events per second through POST /api/stripe/webhook, next to the same
writes done directly in SQL, on one embedded Postgres started for this run.

The stream: the catalogue, then per organization a customer, a checkout, a subscription
created and upgraded, its invoice and payment intent, and an ignored charge event; 10%
of deliveries are duplicates of earlier events. Each path runs on its own copy of the
same seeded database:

- raw SQL: per event, one transaction that records the event id and upserts the
  object's row (no ordering rule, no effects): the floor;
- SQL function: `public.stripe_apply_event` over psycopg (parsing included, no HTTP);
- webhook: signed HTTP requests to the real server, 1 client and 8 clients.

Run: .venv/bin/python bench/stripe_webhook.py [--orgs 300]
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from functions import mounts  # noqa: E402
from lib.billing.events import HANDLERS, apply_event, parse_event  # noqa: E402
from lib.billing.objects import normalize  # noqa: E402
from lib.local import embedded, fake_stripe, migrate  # noqa: E402
from lib.local.fake_stripe import (  # noqa: E402
    DAY,
    ENT_PRICE,
    ENT_PRODUCT,
    NOW,
    ConnDatabase,
    catalogue,
    checkout_event,
    customer_event,
    event,
    invoice_event,
    payment_intent_event,
    subscription_event,
)
from lib.local.threaded import running_server  # noqa: E402

WEBHOOK_SECRET = "whsec_tollbooth_bench"
JWT_SECRET = "tollbooth-bench-jwt-secret-with-at-least-32-characters"


def signed(evt: dict[str, Any] | bytes) -> tuple[bytes, dict[str, str]]:
    return fake_stripe.signed(evt, WEBHOOK_SECRET)


def server_env(dsn: str) -> dict[str, str | None]:
    return {"DATABASE_URL": dsn, "SUPABASE_URL": None, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_SECRET_KEY": None, "SUPABASE_JWT_SECRET": JWT_SECRET}


TABLE_OF = {"product": "stripe_products", "price": "stripe_prices", "customer": "stripe_customers",
            "subscription": "subscriptions", "invoice": "payments", "payment_intent": "payments"}


def build_stream(orgs: list[str], duplicates: float, seed: int = 7) -> list[bytes]:
    events = catalogue()
    for n, org in enumerate(orgs):
        cus, sub, t = f"cus_Bench{n}", f"sub_Bench{n}", NOW - 5 * DAY + n
        events += [
            customer_event(cus, org_id=org, created=t),
            checkout_event(f"cs_test_Bench{n}", org_id=org, customer_id=cus, subscription_id=sub, created=t + 2),
            subscription_event(sub, cus, org_id=org, created=t + 1, type="customer.subscription.created"),
            invoice_event(f"in_Bench{n}", cus, sub, created=t + 1),
            payment_intent_event(f"pi_Bench{n}", cus, created=t + 1),
            subscription_event(sub, cus, org_id=org, created=t + DAY, price=(ENT_PRICE, ENT_PRODUCT)),
            event("charge.succeeded", created=t + 1),
        ]
    rng = random.Random(seed)
    stream = [json.dumps(e).encode() for e in events]
    for _ in range(int(len(stream) * duplicates / (1 - duplicates))):
        at = rng.randrange(1, len(stream))
        stream.insert(at, stream[rng.randrange(at)])
    return stream


def clone(admin_dsn: str, template: str, name: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(f'create database "{name}" template "{template}"')
    return admin_dsn.replace("/postgres?", f"/{name}?")


def timed(fn, items) -> tuple[float, list[float]]:
    latencies, start = [], time.perf_counter()
    for item in items:
        t = time.perf_counter()
        fn(item)
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - start, latencies


def run_raw_sql(dsn: str, stream: list[bytes]) -> tuple[float, list[float]]:
    """The floor: record the id, upsert the row; nothing else."""
    with psycopg.connect(dsn) as conn:
        def one(raw: bytes) -> None:
            evt = json.loads(raw)
            obj, handler = evt["data"]["object"], HANDLERS.get(evt["type"])
            with conn.transaction():
                fresh = conn.execute(
                    "insert into public.stripe_events (id, type, created, status) values "
                    "(%s, %s, to_timestamp(%s), 'processed') on conflict (id) do nothing returning id",
                    (evt["id"], evt["type"], evt["created"])).fetchone()
                if not fresh or handler is None or handler.kind not in TABLE_OF:
                    return
                normalize(handler.kind, obj)
                table = TABLE_OF[handler.kind]
                extra = {"subscriptions": (", customer_id, status", ", %(customer)s, %(status)s"),
                         "stripe_prices": (", product_id, currency, type", ", %(product)s, 'usd', 'recurring'"),
                         "payments": (", kind, status", ", 'invoice', 'paid'")}.get(table, ("", ""))
                conn.execute(
                    f"insert into public.{table} (id, synced_at, stripe_data{extra[0]}) values "
                    f"(%(id)s, to_timestamp(%(created)s), %(data)s{extra[1]}) on conflict (id) do update "
                    "set synced_at = excluded.synced_at, stripe_data = excluded.stripe_data",
                    {"id": obj["id"], "created": evt["created"], "data": json.dumps(obj),
                     "customer": obj.get("customer"), "status": obj.get("status"), "product": obj.get("product")})
        return timed(one, stream)


def run_sql_function(dsn: str, stream: list[bytes]) -> tuple[float, list[float]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        db = ConnDatabase(conn)
        return timed(lambda raw: apply_event(db, parse_event(raw)), stream)


def run_webhook(dsn: str, stream: list[bytes], clients: int) -> tuple[float, list[float]]:
    with running_server(mounts(), **server_env(dsn)) as base:
        url = f"{base}/api/stripe/webhook"

        def post(client: httpx.Client, raw: bytes) -> float:
            body, headers = signed(raw)
            t = time.perf_counter()
            r = client.post(url, content=body, headers=headers)
            assert r.status_code == 200, r.text
            return time.perf_counter() - t

        if clients == 1:
            with httpx.Client(timeout=30) as client:
                return timed(lambda raw: post(client, raw), stream)
        # clients deliver side by side: one customer's events interleave and arrive out of
        # order, and the mirror must still end exact (see check)
        lanes: list[list[bytes]] = [stream[i::clients] for i in range(clients)]
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            def lane(items: list[bytes]) -> list[float]:
                with httpx.Client(timeout=30) as client:
                    return [post(client, raw) for raw in items]
            latencies = [x for part in pool.map(lane, lanes) for x in part]
        return time.perf_counter() - start, latencies


def check(dsn: str, orgs: int) -> str:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "select count(*), count(*) filter (where o.plan_id = 'enterprise') from public.subscriptions s "
            "join public.organizations o on o.id = s.org_id").fetchone()
        subs, enterprise = row if row else (0, 0)
    assert subs == orgs, f"{subs} subscriptions for {orgs} organizations"
    assert enterprise == orgs, f"only {enterprise} of {orgs} organizations ended on their newest plan"
    return f"exact: {enterprise}/{orgs} orgs on enterprise"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=300)
    parser.add_argument("--duplicates", type=float, default=0.10)
    args = parser.parse_args()
    for name in ("werkzeug", "tollbooth"):  # access logs would be most of what a request costs
        logging.getLogger(name).setLevel(logging.WARNING)

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tollbooth-bench-"))
    admin = embedded.start(tmp / "pg", keep_running=False, database="postgres")
    embedded.ensure_database(admin, "bench_template")
    template = admin.replace("/postgres?", "/bench_template?")
    migrate.apply_all(template, seed=False)
    with psycopg.connect(template, autocommit=True) as c:
        c.execute("insert into auth.users (id, aud, role, email, raw_user_meta_data, raw_app_meta_data) "
                  "select gen_random_uuid(), 'authenticated', 'authenticated', 'bench' || n || '@example.test', "
                  "'{}', '{}' from generate_series(1, %s) n", (args.orgs,))
        orgs = [str(r[0]) for r in c.execute("select id from public.organizations where personal order by slug")]
    stream = build_stream(orgs, args.duplicates)
    print(f"{len(stream)} events ({args.duplicates:.0%} duplicates) for {len(orgs)} organizations; "
          f"setup {time.perf_counter() - started:.1f}s", file=sys.stderr)

    rows: list[tuple[Any, ...]] = []
    for label, run in (("raw SQL inserts (baseline)", run_raw_sql),
                       ("stripe_apply_event (psycopg, no HTTP)", run_sql_function),
                       ("webhook over HTTP, 1 client", lambda d, s: run_webhook(d, s, 1)),
                       ("webhook over HTTP, 8 clients", lambda d, s: run_webhook(d, s, 8))):
        dsn = clone(admin, "bench_template", f"bench_{len(rows)}")
        seconds, latencies = run(dsn, stream)
        note = check(dsn, len(orgs)) if "baseline" not in label else "rows only, no effects"
        rows.append((label, len(stream) / seconds, statistics.median(latencies) * 1000,
                     statistics.quantiles(latencies, n=20)[18] * 1000, note))
        print(f"  {label}: {seconds:.1f}s", file=sys.stderr)

    base = rows[0][1]
    print(f"\n{'path':<40} {'events/s':>9} {'x base':>7} {'p50 ms':>7} {'p95 ms':>7}  check")
    for label, rate, p50, p95, note in rows:
        print(f"{label:<40} {rate:>9.0f} {rate / base:>7.2f} {p50:>7.2f} {p95:>7.2f}  {note}")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
