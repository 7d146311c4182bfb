"""`tollbooth stripe sync [--since DATE]`: every product, price, customer and
subscription from Stripe's list endpoints, page by page, stored idempotently."""
from __future__ import annotations

import argparse
import datetime as dt

import httpx
import psycopg
import pytest
import respx

from lib.cli.stripe import register
from lib.core.db import set_database
from tests.support.personas import make_team, make_user
from tests.support.pg import snapshot
from tests.support.secrets import REVOKED_STRIPE_SECRET_KEY, STRIPE_SECRET_KEY
from tests.support.server import env
from tests.support.stripe import (
    ENT_PRICE,
    ENT_PRODUCT,
    PRO_PRICE,
    PRO_PRODUCT,
    STRIPE_API,
    catalogue,
    customer_event,
    subscription_event,
)

SINCE = "2024-01-01"
SINCE_EPOCH = str(int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()))
STORED = ("public.stripe_products", "public.stripe_prices", "public.stripe_customers", "public.subscriptions",
          "public.organizations", "public.credit_grants", "public.credit_ledger")


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tollbooth")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def paged(resource: str, objects: list[dict], page_size: int):
    """A list endpoint serving `objects` `page_size` at a time after `starting_after`."""
    def serve(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("starting_after")
        start = next(i + 1 for i, o in enumerate(objects) if o["id"] == after) if after else 0
        page = objects[start:start + page_size]
        return httpx.Response(200, json={"object": "list", "url": f"/v1/{resource}", "data": page,
                                         "has_more": start + page_size < len(objects)})
    return serve


@pytest.fixture
def account(fresh_dsn):
    """Stripe's side: the catalogue, 3 customers of 3 team orgs, 3 subscriptions."""
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        orgs = [make_team(c, make_user(c, f"owner{n}")) for n in range(3)]
    objects = {kind: [] for kind in ("products", "prices", "customers", "subscriptions")}
    for evt in catalogue():
        objects[evt["data"]["object"]["object"] + "s"].append(evt["data"]["object"])
    for n, org in enumerate(orgs):
        cus = f"cus_Backfill{n}"
        objects["customers"].append(customer_event(cus, org_id=org)["data"]["object"])
        price = (ENT_PRICE, ENT_PRODUCT) if n == 2 else (PRO_PRICE, PRO_PRODUCT)
        objects["subscriptions"].append(subscription_event(f"sub_Backfill{n}", cus, price=price)["data"]["object"])
    return fresh_dsn, orgs, objects


@pytest.fixture
def stripe_lists(account):
    dsn, orgs, objects = account
    with respx.mock(base_url=STRIPE_API, assert_all_called=True) as mock:
        for resource, items in objects.items():
            mock.get(f"/v1/{resource}", name=resource).mock(side_effect=paged(resource, items, page_size=2))
        with env(DATABASE_URL=dsn, SUPABASE_URL=None, STRIPE_SECRET_KEY=STRIPE_SECRET_KEY):
            set_database(None)
            yield mock, dsn, orgs
            set_database(None)


def test_backfill_pages_through_everything_and_stores_it(stripe_lists, capsys):
    mock, dsn, orgs = stripe_lists
    assert run("stripe", "sync", "--since", SINCE) == 0
    for resource, pages in (("products", 2), ("prices", 2), ("customers", 2), ("subscriptions", 2)):
        calls = [dict(call.request.url.params) for call in mock.routes[resource].calls]
        assert len(calls) == pages, f"{resource}: {pages} pages of 2"
        assert calls[0]["limit"] == "100" and calls[0]["created[gte]"] == SINCE_EPOCH
        assert "starting_after" not in calls[0] and calls[1]["starting_after"], "the next page starts after the last id"
    assert dict(mock.routes["subscriptions"].calls[0].request.url.params)["status"] == "all", "canceled ones too"
    out = capsys.readouterr()
    assert "products: 2 synced" in out.err and "subscriptions: done, 3 in all" in out.err, "progress on stderr"
    assert out.out.strip() == "products=3 prices=3 customers=3 subscriptions=3"
    with psycopg.connect(dsn) as c:
        counts = [c.execute(f"select count(*) from {t}").fetchone()[0] for t in STORED[:4]]
        assert counts == [3, 3, 3, 3]
        plans = c.execute("select plan_id, billing_status::text, stripe_customer_id from public.organizations "
                          "where id = any(%s) order by stripe_customer_id", (orgs,)).fetchall()
        assert plans == [("pro", "active", "cus_Backfill0"), ("pro", "active", "cus_Backfill1"),
                         ("enterprise", "active", "cus_Backfill2")], "subscriptions found their plans and orgs"


def test_backfill_twice_changes_nothing_but_sync_times(stripe_lists, capsys):
    _, dsn, _ = stripe_lists
    assert run("stripe", "sync") == 0
    with psycopg.connect(dsn) as c:
        strip = "regexp_replace(x::text, '\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d[.0-9]*\\+00', '', 'g')"
        first = {t: c.execute(f"select {strip} from {t} x order by 1").fetchall() for t in STORED}
        assert run("stripe", "sync") == 0
        again = {t: c.execute(f"select {strip} from {t} x order by 1").fetchall() for t in STORED}
    assert again == first, "idempotent: same rows, no second credit grant"


def test_a_bad_since_date_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        run("stripe", "sync", "--since", "last tuesday")
    assert exit_.value.code == 2 and "not a date" in capsys.readouterr().err


def test_stripe_refusing_the_key_fails_clearly(account, capsys):
    dsn, _, _ = account
    with respx.mock(base_url=STRIPE_API) as mock, \
            env(DATABASE_URL=dsn, SUPABASE_URL=None, STRIPE_SECRET_KEY=REVOKED_STRIPE_SECRET_KEY):
        set_database(None)
        mock.get("/v1/products").mock(return_value=httpx.Response(401, json={"error": {
            "type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****oked"}}))
        with psycopg.connect(dsn) as c:
            before = snapshot(c, *STORED)
            assert run("stripe", "sync") == 1
            assert snapshot(c, *STORED) == before
    assert "Invalid API Key provided" in capsys.readouterr().err
