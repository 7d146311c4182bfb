"""Stripe webhook signatures (`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`).

The signed payload is `f"{t}.".encode() + raw_body`, MAC'd with HMAC-SHA256 keyed by
the whole `whsec_…` secret. Any `v1` may match (several while a secret is rolled);
other schemes (`v0`) are ignored. The signature is checked before the timestamp, and
only a timestamp older than the tolerance is refused, as stripe-python does.
"""
from __future__ import annotations

import hashlib
import hmac
import time

from lib.core.errors import BadRequest

DEFAULT_TOLERANCE = 300


def compute_signature(payload: bytes, secret: str, timestamp: int | str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def sign_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A header as Stripe would send it (tests, benchmarks, local replays)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(payload, secret, t)}"


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, type="invalid_signature")


def parse_header(header: str | None) -> tuple[str, list[str]]:
    """The timestamp (as sent) and every v1 signature, or BadRequest."""
    timestamp, signatures = None, []
    for item in (header or "").split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if not header:
        raise _invalid("missing Stripe-Signature header")
    if timestamp is None or not timestamp.isdigit():
        raise _invalid("Unable to extract timestamp and signatures from header")
    if not signatures:
        raise _invalid("No signatures found with expected scheme v1")
    return timestamp, signatures


def verify(payload: bytes, header: str | None, secret: str, *, tolerance: int = DEFAULT_TOLERANCE,
           now: float | None = None) -> int:
    """The header's timestamp when `payload` was signed with `secret` recently enough."""
    timestamp, signatures = parse_header(header)
    expected = compute_signature(payload, secret, timestamp)
    if not any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in signatures):
        raise _invalid("No signatures found matching the expected signature for payload")
    t = int(timestamp)
    current = time.time() if now is None else now
    if tolerance and t < current - tolerance:
        raise _invalid(f"Timestamp outside the tolerance zone ({t})")
    return t
