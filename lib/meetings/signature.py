"""Daily webhook signatures (`X-Webhook-Signature`, `X-Webhook-Timestamp`).

The signature is base64(HMAC-SHA256(key = base64-decoded webhook secret, msg =
timestamp as sent + "." + raw body)). The timestamp is MAC'd as an opaque string; the
freshness check accepts seconds or milliseconds and refuses a timestamp further than
the tolerance from now in either direction. The signature is checked first.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from lib.core.errors import BadRequest

DEFAULT_TOLERANCE = 300


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, type="invalid_signature")


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("DAILY_WEBHOOK_SECRET must be base64 (Daily's `hmac`)") from exc


def compute_signature(payload: bytes, secret: str, timestamp: str) -> str:
    mac = hmac.new(_key(secret), timestamp.encode() + b"." + payload, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def sign_headers(payload: bytes, secret: str, timestamp: str | int | None = None) -> dict[str, str]:
    """Headers as Daily would send them (tests, local replays)."""
    ts = str(int(time.time())) if timestamp is None else str(timestamp)
    return {"X-Webhook-Signature": compute_signature(payload, secret, ts), "X-Webhook-Timestamp": ts}


def timestamp_seconds(timestamp: str) -> float:
    value = float(timestamp)
    return value / 1000 if value > 1e11 else value  # milliseconds


def verify(payload: bytes, signature: str | None, timestamp: str | None, secret: str, *,
           tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> float:
    """The timestamp (seconds) when `payload` was signed with `secret` recently enough."""
    if not signature:
        raise _invalid("missing X-Webhook-Signature header")
    if not timestamp:
        raise _invalid("missing X-Webhook-Timestamp header")
    ts = timestamp.strip()
    if not ts.replace(".", "", 1).isdigit():
        raise _invalid("X-Webhook-Timestamp is not a number")
    expected = compute_signature(payload, secret, ts)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise _invalid("signature does not match the payload")
    seconds = timestamp_seconds(ts)
    current = time.time() if now is None else now
    if tolerance and abs(current - seconds) > tolerance:
        raise _invalid(f"timestamp outside the tolerance zone ({ts})")
    return seconds
