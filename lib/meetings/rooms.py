"""Creating and cancelling meetings: the database says what the user may do (membership,
the plan's meeting limits), Daily creates or deletes the room, the database stores the
result. Nothing is stored for a room Daily did not create; a room Daily created but we
could not store is deleted again.
"""
from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lib.core.db import Database
from lib.core.errors import TollboothError
from lib.core.log import get_logger
from lib.meetings.daily_api import DailyClient

log = get_logger("meetings")
DEFAULT_MINUTES = 60


class CreateMeeting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org_id: uuid.UUID
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,100}$")
    privacy: Literal["private", "public"] = "private"
    scheduled_for: dt.datetime | None = None
    # how long the room exists (from scheduled_for, or now)
    duration_minutes: int = Field(default=DEFAULT_MINUTES, ge=1, le=24 * 60)
    max_participants: int | None = Field(default=None, ge=1, le=1000)
    enable_recording: bool = False
    enable_transcription: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


def room_times(req: CreateMeeting, now: dt.datetime | None = None) -> tuple[dt.datetime | None, dt.datetime]:
    """(nbf, exp): the room opens at scheduled_for (if later than now) and closes
    `duration_minutes` after it opens."""
    now = now or dt.datetime.now(dt.UTC)
    start = req.scheduled_for
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    opens = start if start is not None and start > now else None
    return opens, (opens or now) + dt.timedelta(minutes=req.duration_minutes)


def daily_room_body(name: str, req: CreateMeeting, limits: dict[str, Any]) -> dict[str, Any]:
    """The POST /rooms body: the request within the plan's limits (checked by SQL)."""
    opens, closes = room_times(req)
    props: dict[str, Any] = {"exp": int(closes.timestamp())}
    if opens is not None:
        props["nbf"] = int(opens.timestamp())
    max_participants = req.max_participants or limits.get("max_participants")
    if max_participants:
        props["max_participants"] = max_participants
    if req.enable_recording:
        props["enable_recording"] = "cloud"
    if req.enable_transcription:
        props["enable_transcription_storage"] = True
    return {"name": name, "privacy": req.privacy, "properties": props}


def create_meeting(db: Database, daily: DailyClient, user_id: uuid.UUID, req: CreateMeeting) -> dict[str, Any]:
    _, closes = room_times(req)
    check = {"org_id": str(req.org_id), "user_id": str(user_id), "max_participants": req.max_participants,
             "enable_recording": req.enable_recording, "expires_at": closes.isoformat()}
    limits = db.rpc("meeting_check", check)
    if req.max_participants is None and limits.get("max_participants"):
        check["max_participants"] = limits["max_participants"]
    name = req.name or f"tb-{secrets.token_hex(8)}"
    room = daily.create_room(daily_room_body(name, req, limits))
    try:
        meeting: dict[str, Any] = db.rpc("create_meeting", {
            **check, "room_name": room.get("name") or name, "daily_room": room, "privacy": req.privacy,
            "scheduled_for": req.scheduled_for.isoformat() if req.scheduled_for else None,
            "enable_transcription": req.enable_transcription, "metadata": req.metadata})
    except TollboothError:
        try:
            daily.delete_room(room.get("name") or name)
        except TollboothError:
            log.exception("room %s was created at Daily but not stored, and could not be deleted", name)
        raise
    return meeting


def cancel_meeting(db: Database, daily: DailyClient, user_id: uuid.UUID, meeting_id: uuid.UUID) -> dict[str, Any]:
    """Creator or org admin: delete the room at Daily (already gone is fine), then mark
    the meeting cancelled. A Daily failure changes nothing."""
    args = {"meeting_id": str(meeting_id), "user_id": str(user_id)}
    meeting = db.rpc("meeting_cancel_check", args)
    if meeting["status"] != "cancelled":
        daily.delete_room(meeting["room_name"])
    answer: dict[str, Any] = db.rpc("cancel_meeting", args)
    return answer
