"""Waiting for the clock: per-key rate windows are the clock's minutes."""
from __future__ import annotations

import time


def early_in_a_minute(latest_second: float = 50.0) -> None:
    """Return once the clock is at most `latest_second` into its minute, so calls made
    right after fall in one rate window (begin_chat_request's is the clock's minute)."""
    while time.time() % 60 > latest_second:
        time.sleep(0.5)
