"""Backfill the Stripe mirror from the API (`tollbooth stripe sync`).

Lists products, prices, customers and subscriptions (in that order, so a subscription
finds the plan its product sells), a page of 100 at a time, and stores each page in
one transaction through the same SQL sync functions the webhook uses, as true now.
Idempotent: run it again and nothing changes but `synced_at`.
"""
from __future__ import annotations

import sys
from typing import Any, TextIO

import stripe

from lib.billing.api import list_pages
from lib.billing.events import sync_objects
from lib.core.db import Database

# (kind stored, list endpoint, extra list parameters)
RESOURCES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("product", "products", {}),
    ("price", "prices", {}),
    ("customer", "customers", {}),
    ("subscription", "subscriptions", {"status": "all"}),
)


def backfill(db: Database, client: stripe.StripeClient, *, since: int | None = None,
             out: TextIO | None = None) -> dict[str, int]:
    """Every object of every resource, stored page by page; progress on `out` (stderr).
    Returns counts per kind."""
    out = out or sys.stderr
    totals: dict[str, int] = {}
    for kind, resource, extra in RESOURCES:
        params = {**extra, **({"created": {"gte": since}} if since is not None else {})}
        totals[kind] = 0
        for page in list_pages(client, resource, params):
            sync_objects(db, kind, page)
            totals[kind] += len(page)
            print(f"{resource}: {totals[kind]} synced", file=out, flush=True)
        print(f"{resource}: done, {totals[kind]} in all", file=out, flush=True)
    return totals
