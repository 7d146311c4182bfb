"""The scheduled jobs: the rollup (`usage_rollup`, exact and incremental), a rebuild of
a date range a day at a time, and the lifecycle (`usage_lifecycle`'s steps, then the
Stripe meter reports when STRIPE_SECRET_KEY is set). Each returns plain counts."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from lib.core.config import Settings
from lib.core.db import Database
from lib.core.errors import TollboothError
from lib.usage.meters import report_usage


def rollup(db: Database, *, wait: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = db.rpc("usage_rollup", {"wait": wait})
    return result


def days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def rebuild(db: Database, first: dt.date, last: dt.date,
            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Rebuilds UTC days first..last, one transaction per day (each consistent with the
    watermark), reporting progress as (done, total)."""
    total = (last - first).days + 1
    if total < 1:
        raise ValueError("FROM must not be after TO")
    events = rows = 0
    for done, day in enumerate(days(first, last), 1):
        result = db.rpc("usage_rollup_rebuild", {"from_day": day.isoformat(), "to_day": day.isoformat()})
        events += int(result["events"])
        rows += int(result["rows"])
        if progress:
            progress(done, total)
    return {"rebuilt_days": total, "from_day": first.isoformat(), "to_day": last.isoformat(),
            "events": events, "rows": rows}


def lifecycle(db: Database, settings: Settings, *, at: dt.datetime | None = None) -> dict[str, Any]:
    """Every lifecycle step with its counts; the Stripe step is skipped (and says why)
    without STRIPE_SECRET_KEY, and its failure never hides the other steps' counts."""
    steps: dict[str, Any] = db.rpc("usage_lifecycle", {"at": at.isoformat()} if at else {})
    if not settings.stripe_secret_key:
        steps["stripe_meters"] = {"skipped": "STRIPE_SECRET_KEY is not set"}
    else:
        try:
            steps["stripe_meters"] = report_usage(db, settings.stripe_secret_key, at=at)
        except TollboothError as err:
            steps["stripe_meters"] = {"error": err.message}
    return steps


def run_all(db: Database, settings: Settings) -> dict[str, Any]:
    """The cron: rollup first (meter reports read usage_daily), then the lifecycle."""
    return {"rollup": rollup(db), "lifecycle": lifecycle(db, settings)}
