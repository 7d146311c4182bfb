"""The usage page's HTTP queries, validated at the edge and handed to one SQL function
each: `GET /api/usage` (usage_summary_for_user, JSON or CSV), `GET /api/usage/requests`
(usage_requests_for_user, opaque cursors) and `GET /v1/usage` (usage_for_key)."""
from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lib.core.errors import BadRequest
from lib.core.http import validate

MEASURES = ("requests", "ok_requests", "failed_requests", "prompt_tokens", "cached_tokens", "completion_tokens",
            "reasoning_tokens", "total_tokens", "credits", "cost_usd")


class SummaryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org_id: uuid.UUID
    days: int = Field(default=30, ge=1, le=400)
    tz: str = Field(default="UTC", min_length=1, max_length=64)
    group_by: Literal["day", "hour"] = "day"
    format: Literal["json", "csv"] = "json"

    def rpc_args(self, user_id: uuid.UUID) -> dict[str, Any]:
        return {"user_id": str(user_id), "org_id": str(self.org_id), "days": self.days, "tz": self.tz,
                "group_by": self.group_by}


class RequestsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org_id: uuid.UUID
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = None
    key: uuid.UUID | None = None
    model: str | None = Field(default=None, max_length=200)
    status: str | None = Field(default=None, max_length=40)
    date: dt.date | None = None  # one UTC day
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def rpc_args(self, user_id: uuid.UUID) -> dict[str, Any]:
        since, until = self.since, self.until
        if self.date is not None:
            since = dt.datetime.combine(self.date, dt.time(), dt.UTC)
            until = since + dt.timedelta(days=1)
        before_at, before_id = decode_cursor(self.cursor) if self.cursor else (None, None)
        return {"user_id": str(user_id), "org_id": str(self.org_id), "before_at": before_at,
                "before_id": before_id, "page_size": self.limit, "api_key_id": str(self.key) if self.key else None,
                "model": self.model, "status": self.status,
                "since": since.isoformat() if since else None, "until": until.isoformat() if until else None}


def parse_query(args: Mapping[str, str], model: type[SummaryQuery] | type[RequestsQuery]) -> Any:
    """The query string as `model` (one value per name), or BadRequest."""
    return validate({k: v for k, v in args.items()}, model)


def encode_cursor(cursor: dict[str, Any] | None) -> str | None:
    """The SQL's {created_at, id} as one opaque URL-safe token."""
    if not cursor:
        return None
    raw = json.dumps([str(cursor["created_at"]), str(cursor["id"])]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[str, str]:
    try:
        at, ident = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        dt.datetime.fromisoformat(at)
        return at, str(uuid.UUID(ident))
    except (ValueError, TypeError) as exc:
        raise BadRequest("cursor is not one this API gave out") from exc


def requests_page(answer: dict[str, Any]) -> dict[str, Any]:
    """The SQL page with its cursor made opaque."""
    return {"object": "list", "data": answer["data"], "has_more": answer["has_more"],
            "next_cursor": encode_cursor(answer.get("next_cursor"))}


def summary_csv(summary: dict[str, Any]) -> str:
    """One row per bucket, a header row first; the columns are the bucket and the measures."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["bucket", *MEASURES])
    for bucket in summary["buckets"]:
        writer.writerow([bucket["bucket"], *(bucket[m] for m in MEASURES)])
    return out.getvalue()
