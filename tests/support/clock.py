"""Waiting for the clock: per-key rate windows are the clock's minutes, and days and
months turn at midnight UTC."""
from __future__ import annotations

import time


def early_in(period_s: float, latest_s: float) -> None:
    """Return once the clock is at most `latest_s` into its current `period_s`-second
    period (minutes and UTC days are whole periods of the epoch), sleeping into the
    next period when it is later than that."""
    into = time.time() % period_s
    if into > latest_s:
        time.sleep(period_s - into + 0.01)


def clear_of_a_utc_day_turn(margin: float = 10.0) -> None:
    """Return once the next midnight UTC (so also the next turn of a month) is more than
    `margin` seconds away, so that a test started now runs within one UTC day."""
    early_in(86400, 86400 - margin)


def early_in_a_minute(latest_second: float = 50.0) -> None:
    """Return once the clock is at most `latest_second` into its minute, so calls made
    right after fall in one rate window (begin_chat_request's is the clock's minute)."""
    early_in(60, latest_second)
