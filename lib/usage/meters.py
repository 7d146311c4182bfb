"""Stripe Billing Meters: sends the reports `usage_meter_claim` hands out as
`POST /v1/billing/meter_events` (event_name, payload[stripe_customer_id],
payload[value], timestamp, identifier) and records each answer with
`usage_meter_record`. Plain httpx (respx fakes it in tests); the identifier is
deterministic per customer, day and sequence, and Stripe deduplicates by it, so a
retry after a lost answer never bills twice. Legacy usage records are not used.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from lib.core.db import Database

STRIPE_API = "https://api.stripe.com"
# Stripe's answer when an identifier was already used (the event is recorded): treat as sent
DUPLICATE_CODES = frozenset({"duplicate_meter_event", "resource_already_exists"})


def send_meter_event(client: httpx.Client, secret_key: str, report: dict[str, Any],
                     base_url: str = STRIPE_API) -> tuple[str, int | None, Any, str | None]:
    """One meter event: (outcome, http status, Stripe's answer, error)."""
    form = {"event_name": report["event_name"], "payload[stripe_customer_id]": report["customer_id"],
            "payload[value]": str(report["value"]), "timestamp": str(report["timestamp"]),
            "identifier": report["identifier"]}
    try:
        resp = client.post(f"{base_url}/v1/billing/meter_events", data=form,
                           headers={"Authorization": f"Bearer {secret_key}",
                                    "Idempotency-Key": report["identifier"]})
    except httpx.HTTPError as exc:
        return "failed", None, None, f"Stripe did not answer: {exc}"
    try:
        answer: Any = resp.json()
    except ValueError:
        answer = {"body": resp.text[:1000]}
    if resp.status_code < 300:
        return "sent", resp.status_code, answer, None
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    message = str(error.get("message") or resp.reason_phrase)
    if error.get("code") in DUPLICATE_CODES:
        return "sent", resp.status_code, answer, None
    if resp.status_code == 429 or resp.status_code >= 500:
        return "failed", resp.status_code, answer, message
    return "rejected", resp.status_code, answer, message


def report_usage(db: Database, secret_key: str, *, at: dt.datetime | None = None,
                 client: httpx.Client | None = None, base_url: str = STRIPE_API) -> dict[str, int]:
    """Claims what is due and sends it; counts per outcome."""
    args = {"at": at.isoformat()} if at else {}
    claim = db.rpc("usage_meter_claim", args)
    counts = {"created": int(claim["created"]), "expired": int(claim["expired"]),
              "sent": 0, "failed": 0, "rejected": 0}
    own = client is None
    http = client or httpx.Client(timeout=20)
    try:
        for report in claim["reports"]:
            outcome, status, answer, error = send_meter_event(http, secret_key, report, base_url)
            db.rpc("usage_meter_record", {"identifier": report["identifier"], "outcome": outcome,
                                          "http_status": status, "answer": answer, "error": error})
            counts[outcome] += 1
    finally:
        if own:
            http.close()
    return counts
