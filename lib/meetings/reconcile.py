"""`tollbooth meetings reconcile [--since]`: after a webhook outage (Daily's circuit
breaker drops every event while the endpoint is FAILED), re-read each incomplete
meeting's sessions, participants, recordings and transcripts from Daily's REST API and
merge them with the webhook's own rules (public.reconcile_meeting: one transaction per
meeting), so replaying never moves anything backwards.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from lib.core.db import Database
from lib.core.errors import TollboothError
from lib.core.log import get_logger
from lib.meetings.daily_api import DailyClient

log = get_logger("meetings")
RECORDING_STATUS = {"finished": "ready", "in-progress": "started", "failed": "error", "error": "error"}
TRANSCRIPT_STATUS = {"t_finished": "ready", "t_in_progress": "started", "t_error": "error"}


def _num(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def sessions_from(meetings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GET /meetings items ({id, start_time, duration, ongoing, participants[{participant_id,
    user_id, user_name, join_time, duration}]}) as reconcile_meeting reads them."""
    out = []
    for m in meetings:
        start, duration = _num(m.get("start_time")), _num(m.get("duration"))
        end = start + duration if start is not None and duration is not None and not m.get("ongoing") else None
        people = []
        for p in m.get("participants") or []:
            joined, stayed = _num(p.get("join_time")), _num(p.get("duration"))
            if not p.get("participant_id"):
                continue
            people.append({"session_id": p["participant_id"], "user_id": p.get("user_id"),
                           "user_name": p.get("user_name"), "joined_at": joined,
                           "left_at": joined + stayed if joined is not None and stayed is not None else None})
        out.append({"meeting_id": m.get("id"), "start_ts": start, "end_ts": end, "participants": people})
    return out


def recordings_from(items: list[dict[str, Any]], link: Callable[[str], str | None]) -> list[dict[str, Any]]:
    out = []
    for r in items:
        status = RECORDING_STATUS.get(str(r.get("status")), "started")
        url = link(r["id"]) if status == "ready" and r.get("id") else None
        out.append({"id": r.get("id"), "status": status, "url": url,
                    "details": {k: r.get(k) for k in ("duration", "max_participants", "s3key", "start_ts") if k in r}})
    return out


def transcripts_from(items: list[dict[str, Any]], link: Callable[[str], str | None]) -> list[dict[str, Any]]:
    out = []
    for t in items:
        tid = t.get("transcriptId") or t.get("id")
        status = TRANSCRIPT_STATUS.get(str(t.get("status")), "started")
        out.append({"id": tid, "status": status, "url": link(tid) if status == "ready" and tid else None,
                    "details": {k: t.get(k) for k in ("duration", "mtgSessionId") if k in t}})
    return out


def reconcile(db: Database, daily: DailyClient, *, since: dt.datetime | None = None) -> dict[str, int]:
    """Every incomplete meeting created since `since`; a meeting Daily fails on is
    counted and skipped (the next run tries again)."""
    totals = {"meetings": 0, "failed": 0, "participants": 0, "recordings": 0, "transcripts": 0}
    for m in db.rpc("meetings_to_reconcile", {"since": since.isoformat() if since else None}):
        try:
            sessions = sessions_from(daily.meetings(m["room_name"]))
            recordings = recordings_from(daily.recordings(m["room_name"]), daily.recording_link)
            transcripts = (transcripts_from(daily.transcripts(m["daily_room_id"]), daily.transcript_link)
                           if m.get("daily_room_id") else [])
            done = db.rpc("reconcile_meeting", {"meeting_id": m["id"], "sessions": sessions,
                                                "recordings": recordings, "transcripts": transcripts})
        except TollboothError as err:
            log.warning("reconcile of meeting %s (%s) failed: %s", m["id"], m["room_name"], err.message)
            totals["failed"] += 1
            continue
        totals["meetings"] += 1
        for k in ("participants", "recordings", "transcripts"):
            totals[k] += int(done[k])
    return totals
