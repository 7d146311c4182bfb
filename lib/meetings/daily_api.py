"""Daily's REST API over httpx (so respx or lib.local.fake_daily can stand in for it),
and the one mapping of its failures: Daily refusing or failing is a 502 carrying
Daily's message, a timeout or an unreachable API a 504. Objects come back as dicts.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from lib.core.config import Settings
from lib.core.errors import UpstreamError, UpstreamTimeout

TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class DailyClient:
    def __init__(self, api_key: str, base_url: str = "https://api.daily.co/v1", *,
                 client: httpx.Client | None = None):
        self.base_url = base_url.rstrip("/")
        self.http = client or httpx.Client(timeout=TIMEOUT)
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                allow_404: bool = False) -> dict[str, Any] | None:
        try:
            resp = self.http.request(method, f"{self.base_url}{path}", json=json, params=params, headers=self.headers)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"Daily did not answer in time ({method} {path})", type="daily_timeout") from exc
        except httpx.HTTPError as exc:
            raise UpstreamTimeout(f"Daily could not be reached ({method} {path}): {exc}", type="daily_timeout") from exc
        if resp.status_code == 404 and allow_404:
            return None
        if resp.status_code >= 400:
            raise UpstreamError(f"Daily refused {method} {path} ({resp.status_code}): {error_message(resp)}",
                                type="daily_error")
        try:
            body = resp.json()
        except ValueError as exc:
            raise UpstreamError(f"Daily answered {method} {path} with something that is not JSON",
                                type="daily_error") from exc
        return body if isinstance(body, dict) else {"data": body}

    def create_room(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/rooms", json=body) or {}

    def get_room(self, name: str) -> dict[str, Any] | None:
        return self.request("GET", f"/rooms/{quote(name, safe='')}", allow_404=True)

    def delete_room(self, name: str) -> bool:
        """True when Daily deleted it, False when it was already gone."""
        return self.request("DELETE", f"/rooms/{quote(name, safe='')}", allow_404=True) is not None

    def list_all(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item of a Daily list endpoint ({total_count, data}), following `starting_after`."""
        items: list[dict[str, Any]] = []
        query = {**params, "limit": 100}
        while True:
            page = self.request("GET", path, params=query) or {}
            data = [x for x in page.get("data") or [] if isinstance(x, dict)]
            items += data
            last = data[-1].get("id") or data[-1].get("transcriptId") if data else None
            if len(data) < 100 or not last:
                return items
            query["starting_after"] = last

    def meetings(self, room: str) -> list[dict[str, Any]]:
        return self.list_all("/meetings", {"room": room})

    def recordings(self, room: str) -> list[dict[str, Any]]:
        return self.list_all("/recordings", {"room_name": room})

    def recording_link(self, recording_id: str) -> str | None:
        link = self.request("GET", f"/recordings/{quote(recording_id, safe='')}/access-link", allow_404=True)
        return (link or {}).get("download_link")

    def transcripts(self, room_id: str) -> list[dict[str, Any]]:
        return self.list_all("/transcript", {"roomId": room_id})

    def transcript_link(self, transcript_id: str) -> str | None:
        link = self.request("GET", f"/transcript/{quote(transcript_id, safe='')}/access-link", allow_404=True)
        return (link or {}).get("link")


def error_message(resp: httpx.Response) -> str:
    """Daily's error body is {"error": "<kind>", "info": "<message>"}."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "info") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return str(body)[:300]


def make_client(settings: Settings) -> DailyClient:
    """The client for DAILY_API_KEY (503 naming it when unset) at DAILY_API_URL."""
    return DailyClient(settings.require("daily_api_key"), settings.daily_api_url)
