"""Daily webhook events: the envelope, the registry of handled types, and their
application as one SQL call (`public.daily_apply_event`), which stores the raw event
first, idempotent by Daily's event id.

Daily's payloads are inconsistent (`room` vs `room_name`, numbers sent as strings,
milliseconds or seconds, fields missing from some events): each handled type has a
lenient model that normalizes its payload to what SQL reads (`room`, epoch seconds as
numbers, `recording_id` / `transcript_id`). A payload that does not fit its model is
still stored, as failed with the reason, and answered 200: Daily turns the webhook off
after three failed deliveries, and nothing is gained by refusing what we can keep.
"""
from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from lib.core.db import Database
from lib.core.errors import BadRequest
from lib.core.http import validation_message


def _number(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _epoch(value: Any) -> Any:
    value = _number(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1e11:
        return value / 1000  # milliseconds
    return value


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _flag(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value


Number = Annotated[float | None, BeforeValidator(_number)]
Epoch = Annotated[float | None, BeforeValidator(_epoch)]
Text = Annotated[str | None, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_flag)]


class Payload(BaseModel):
    """Unknown fields are kept (they travel to SQL as details); `room_name` becomes `room`."""
    model_config = ConfigDict(extra="allow")
    room: Text = None
    room_name: Text = None

    def normalized(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True)
        room = data.pop("room_name", None)
        if room and not data.get("room"):
            data["room"] = room
        return data


class MeetingPayload(Payload):
    meeting_id: Text = None
    start_ts: Epoch = None
    end_ts: Epoch = None


class ParticipantPayload(Payload):
    session_id: str = Field(min_length=1, max_length=255)
    user_id: Text = None
    user_name: Text = None
    owner: Flag = False
    joined_at: Epoch = None
    duration: Number = None
    will_eject_at: Epoch = None


class RecordingPayload(Payload):
    recording_id: Text = None
    start_ts: Epoch = None
    duration: Number = None
    max_participants: Number = None
    timestamp: Epoch = None
    error_msg: Text = None
    action: Text = None
    status: Text = None


class TranscriptPayload(Payload):
    transcript_id: Text = None
    id: Text = None
    transcriptId: Text = None
    room_id: Text = None
    mtg_session_id: Text = None
    error: Text = None

    def normalized(self) -> dict[str, Any]:
        data = super().normalized()
        tid = data.pop("transcript_id", None) or data.pop("id", None) or data.pop("transcriptId", None)
        if tid:
            data["transcript_id"] = tid
        return data


# every type we subscribe to and the model of its payload; written out, checked below
HANDLED_TYPES: tuple[str, ...] = (
    "meeting.started", "meeting.ended", "participant.joined", "participant.left",
    "recording.started", "recording.ready-to-download", "recording.error",
    "transcript.started", "transcript.ready-to-download", "transcript.error",
)
HANDLERS: dict[str, type[Payload]] = {
    "meeting.started": MeetingPayload,
    "meeting.ended": MeetingPayload,
    "participant.joined": ParticipantPayload,
    "participant.left": ParticipantPayload,
    "recording.started": RecordingPayload,
    "recording.ready-to-download": RecordingPayload,
    "recording.error": RecordingPayload,
    "transcript.started": TranscriptPayload,
    "transcript.ready-to-download": TranscriptPayload,
    "transcript.error": TranscriptPayload,
}


def check_registry(handlers: dict[str, type[Payload]], handled: tuple[str, ...]) -> None:
    """Every handled type has a model and every model a handled type; raised at import."""
    missing, extra = set(handled) - set(handlers), set(handlers) - set(handled)
    if missing or extra:
        raise RuntimeError(f"Daily handler registry out of step: without a model {sorted(missing)}, "
                           f"not subscribed {sorted(extra)}")


check_registry(HANDLERS, HANDLED_TYPES)


class DailyEvent(BaseModel):
    """The envelope of every Daily event."""
    model_config = ConfigDict(extra="ignore")
    version: Text = None
    type: str = Field(min_length=1, max_length=255)
    id: Annotated[str, BeforeValidator(_text), Field(min_length=1, max_length=255)]
    payload: dict[str, Any] = Field(default_factory=dict)
    event_ts: Epoch = None


def parse_event(raw: bytes) -> DailyEvent | None:
    """The verified body as an event; None for Daily's endpoint check `{"test": "test"}`."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", type="invalid_event") from exc
    if isinstance(body, dict) and body.get("test") == "test" and "type" not in body:
        return None
    if not isinstance(body, dict):
        raise BadRequest("body is not a Daily event: expected a JSON object", type="invalid_event")
    try:
        return DailyEvent.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(f"body is not a Daily event: {validation_message(exc)}", type="invalid_event") from exc


def normalize(event: DailyEvent) -> tuple[dict[str, Any], str | None]:
    """What SQL reads of the payload, and why it could not be read (None when it could)."""
    model = HANDLERS.get(event.type)
    if model is None:
        room = event.payload.get("room") or event.payload.get("room_name")
        return ({"room": str(room)} if room else {}), None
    try:
        return model.model_validate(event.payload).normalized(), None
    except ValidationError as exc:
        room = event.payload.get("room") or event.payload.get("room_name")
        return ({"room": str(room)} if room else {}), f"payload of {event.type}: {validation_message(exc)}"


def apply_event(db: Database, event: DailyEvent, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stores and applies one verified event: one SQL transaction."""
    data, invalid = normalize(event)
    answer: dict[str, Any] = db.rpc("daily_apply_event", {
        "event_id": event.id, "event_type": event.type, "event_ts": event.event_ts, "data": data,
        "payload": raw if raw is not None else event.model_dump(), "invalid": invalid})
    return answer
