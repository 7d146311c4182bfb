"""Stripe-Signature verification, and the webhook refusing (400, nothing written) what
is not a recent, correctly signed Stripe event."""
from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from lib.billing.signature import compute_signature, sign_header, verify
from lib.core.errors import BadRequest
from tests.support.pg import snapshot
from tests.support.secrets import STRIPE_WEBHOOK_SECRET, WRONG_STRIPE_WEBHOOK_SECRET
from tests.support.server import running_server
from tests.support.stripe import NOW, post_event, server_env, signed, subscription_event

BODY = b'{"id": "evt_1", "object": "event"}'
SIGNED_TABLES = ("public.stripe_events", "public.subscriptions", "public.stripe_customers", "public.organizations")


def refused(payload: bytes, header: str | None, **kw) -> str:
    with pytest.raises(BadRequest) as err:
        verify(payload, header, STRIPE_WEBHOOK_SECRET, **kw)
    assert err.value.status == 400 and err.value.type == "invalid_signature"
    return err.value.message


def test_signature_is_hmac_sha256_of_timestamp_dot_raw_body():
    expected = hmac.new(STRIPE_WEBHOOK_SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(BODY, STRIPE_WEBHOOK_SECRET, NOW) == expected, "Stripe's scheme, secret used as-is"
    assert sign_header(BODY, STRIPE_WEBHOOK_SECRET, NOW) == f"t={NOW},v1={expected}"
    assert verify(BODY, f"t={NOW},v1={expected}", STRIPE_WEBHOOK_SECRET, now=NOW) == NOW


def test_any_v1_may_match_while_a_secret_is_rolled():
    good = compute_signature(BODY, STRIPE_WEBHOOK_SECRET, NOW)
    header = f"t={NOW},v1={'0' * 64},v1={good},v0={'1' * 64}"
    assert verify(BODY, header, STRIPE_WEBHOOK_SECRET, now=NOW) == NOW, "the second v1 matches"


@pytest.mark.parametrize("header, message", [
    (None, "missing Stripe-Signature header"),
    ("", "missing Stripe-Signature header"),
    ("v1=abc", "Unable to extract timestamp"),
    ("t=notanumber,v1=abc", "Unable to extract timestamp"),
    (f"t={NOW}", "No signatures found with expected scheme v1"),
    (f"t={NOW},v0=" + "a" * 64, "No signatures found with expected scheme v1"),
    (f"t={NOW},v1=" + "a" * 64, "No signatures found matching the expected signature"),
    (f"t={NOW},v1=é", "No signatures found matching the expected signature"),
])
def test_malformed_or_wrong_headers_are_refused(header, message):
    assert message in refused(BODY, header, now=NOW)


def test_a_changed_body_or_another_secret_does_not_verify():
    header = sign_header(BODY, STRIPE_WEBHOOK_SECRET, NOW)
    reserialized = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    assert "matching the expected signature" in refused(reserialized, header, now=NOW), "raw bytes, not JSON"
    assert "matching the expected signature" in refused(BODY, sign_header(BODY, "whsec_other", NOW), now=NOW)


def test_tolerance_is_300_seconds_and_one_sided():
    assert verify(BODY, sign_header(BODY, STRIPE_WEBHOOK_SECRET, NOW - 300), STRIPE_WEBHOOK_SECRET, now=NOW) == NOW - 300
    assert "Timestamp outside the tolerance zone" in refused(BODY, sign_header(BODY, STRIPE_WEBHOOK_SECRET, NOW - 301),
                                                             now=NOW)
    assert verify(BODY, sign_header(BODY, STRIPE_WEBHOOK_SECRET, NOW + 3600), STRIPE_WEBHOOK_SECRET, now=NOW) == NOW + 3600, \
        "like stripe-python, a future timestamp is not refused"


def test_signature_is_checked_before_the_timestamp():
    stale_and_wrong = f"t={NOW - 3600},v1={'a' * 64}"
    assert "matching the expected signature" in refused(BODY, stale_and_wrong, now=NOW)


# Section - over HTTP: refused with a clear message, nothing written

def _stale(evt):
    return signed(evt, timestamp=NOW - 301)


def _wrong_secret(evt):
    return signed(evt, secret=WRONG_STRIPE_WEBHOOK_SECRET)


def _no_header(evt):
    return json.dumps(evt).encode(), {"Content-Type": "application/json"}


def _tampered(evt):
    raw, headers = signed(evt)
    return raw.replace(b'"active"', b'"canceled"'), headers


def _signed_body(body: bytes):
    return lambda evt: signed(body)


@pytest.mark.parametrize("make, error_type, message", [
    (_no_header, "invalid_signature", "missing Stripe-Signature header"),
    (_wrong_secret, "invalid_signature", "No signatures found matching"),
    (_tampered, "invalid_signature", "No signatures found matching"),
    (_stale, "invalid_signature", "Timestamp outside the tolerance zone"),
    (_signed_body(b"not json"), "invalid_event", "body is not valid JSON"),
    (_signed_body(b"[1, 2]"), "invalid_event", "expected a JSON object"),
    (_signed_body(b'{"id": "evt_1", "object": "event"}'), "invalid_event", "body is not a Stripe event"),
    (_signed_body(b'{"id": "cus_1", "object": "event", "type": "x", "created": 1, "data": {"object": {}}}'),
     "invalid_event", "id"),
    (_signed_body(json.dumps({"id": "evt_2", "object": "v2.core.event", "type": "v1.billing.meter.error",
                              "created": 1, "data": {"object": {}}}).encode()), "invalid_event", "thin events"),
], ids=["no-header", "wrong-secret", "tampered", "stale", "not-json", "not-object", "no-type", "bad-id", "thin"])
def test_webhook_refuses_and_writes_nothing(world, make, error_type, message):
    evt = subscription_event("sub_Refused", "cus_Refused", org_id=world.people.personal)
    raw, headers = make(evt)
    with world.connect() as c:
        before = snapshot(c, *SIGNED_TABLES)
        r = httpx.post(f"{world.base}/api/stripe/webhook", content=raw, headers=headers)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == error_type
        assert message in r.json()["error"]["message"]
        assert snapshot(c, *SIGNED_TABLES) == before, "an unverified or unreadable request writes nothing"


def test_webhook_without_its_secret_is_503_naming_it(fresh_dsn):
    with running_server(**server_env(fresh_dsn, STRIPE_WEBHOOK_SECRET=None)) as base:
        r = post_event(base, subscription_event("sub_X", "cus_X"))
    assert r.status_code == 503
    assert "STRIPE_WEBHOOK_SECRET" in r.json()["error"]["message"]


def test_webhook_takes_only_post(world):
    r = httpx.get(f"{world.base}/api/stripe/webhook")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
