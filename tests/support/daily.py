"""Daily test helpers: fixture events from tests/meetings/fixtures (deep-copied, then
given this test's room, ids and times), signed as Daily signs them, applied over HTTP or
straight through lib.meetings.events on the test's connection; meetings made as superuser."""
from __future__ import annotations

import copy
import functools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from lib.meetings.events import apply_event, parse_event
from lib.meetings.signature import sign_headers
from tests.support.secrets import DAILY_API_KEY, DAILY_WEBHOOK_SECRET, JWT_SECRET, ROOMS_KEY_A
from tests.support.stripe import ConnDatabase

FIXTURES = Path(__file__).resolve().parent.parent / "meetings" / "fixtures"
EVENT_TYPES = ("meeting.started", "meeting.ended", "participant.joined", "participant.left", "recording.started",
               "recording.ready-to-download", "recording.error", "transcript.started",
               "transcript.ready-to-download", "transcript.error")
T0 = 1_800_000_000.0


@functools.cache
def _read(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def event(kind: str, room: str | None = None, *, event_id: str | None = None, event_ts: float | None = None,
          **fields: Any) -> dict[str, Any]:
    evt = copy.deepcopy(_read(kind))
    evt["id"] = event_id or f"{evt['id']}-{uuid.uuid4().hex[:8]}"
    if event_ts is not None:
        evt["event_ts"] = event_ts
    p = evt["payload"]
    if room is not None:
        p["room" if "room" in p else "room_name" if "room_name" in p else "room"] = room
    p.update(fields)
    return evt


def apply(conn: psycopg.Connection, *events: dict[str, Any]) -> list[dict[str, Any]]:
    db = ConnDatabase(conn)
    out = []
    for e in events:
        raw = json.dumps(e).encode()
        parsed = parse_event(raw)
        assert parsed is not None
        out.append(apply_event(db, parsed, json.loads(raw)))
    return out


def signed(evt: dict[str, Any] | bytes, secret: str = DAILY_WEBHOOK_SECRET,
           timestamp: str | int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = evt if isinstance(evt, bytes) else json.dumps(evt).encode()
    return raw, {**sign_headers(raw, secret, timestamp), "Content-Type": "application/json"}


def post_event(base: str, evt: dict[str, Any] | bytes, **kw: Any) -> httpx.Response:
    raw, headers = signed(evt, **kw)
    return httpx.post(f"{base}/api/daily/webhook", content=raw, headers=headers, timeout=30)


def make_meeting(conn: psycopg.Connection, org: Any, by: Any = None, room: str | None = None,
                 **cols: Any) -> tuple[uuid.UUID, str]:
    room = room or f"room-{uuid.uuid4().hex[:10]}"
    names = ["org_id", "created_by", "room_name", *cols]
    values = [org, getattr(by, "id", by), room, *cols.values()]
    mid = conn.execute(f"insert into public.meetings ({', '.join(names)}) values ({', '.join(['%s'] * len(names))}) "
                       "returning id", values).fetchone()[0]
    return mid, room


def server_env(dsn: str, daily_url: str | None = None, **extra: str | None) -> dict[str, str | None]:
    return {"DATABASE_URL": dsn, "SUPABASE_URL": None, "SUPABASE_JWT_SECRET": JWT_SECRET,
            "DAILY_WEBHOOK_SECRET": DAILY_WEBHOOK_SECRET, "DAILY_API_KEY": DAILY_API_KEY,
            "DAILY_API_URL": daily_url, "ROOMS_ENCRYPTION_KEYS": ROOMS_KEY_A,
            # chat is configured (so X-Meeting-Id is checked) but no upstream is ever reached
            "OPENAI_API_KEY": "sk-test-upstream", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", **extra}


def now() -> int:
    return int(time.time())
