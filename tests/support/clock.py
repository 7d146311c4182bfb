"""Waiting for the clock: per-key rate windows are the clock's minutes."""
from __future__ import annotations

import time


def clear_of_a_utc_day_turn(margin: float = 10.0) -> None:
    """Return once the next midnight UTC (so also the next turn of a month) is more than
    `margin` seconds away, so that a test started now runs within one UTC day."""
    left = 86400 - time.time() % 86400
    if left <= margin:
        time.sleep(left + 0.01)


def early_in_a_minute(latest_second: float = 50.0) -> None:
    """Return once the clock is at most `latest_second` into its minute, so calls made
    right after fall in one rate window (begin_chat_request's is the clock's minute)."""
    while time.time() % 60 > latest_second:
        time.sleep(0.5)
