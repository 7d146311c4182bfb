"""Unkey's v2 API over httpx (so respx can stand in for it in tests), and the one mapping of
its failures: Unkey refusing is a 502 naming Unkey's error; unreachable or timing out, a
504. Shapes from Unkey's API reference (https://www.unkey.com/docs/api-reference/v2):
every answer is `{"meta": {"requestId"}, "data": ...}`, errors are
`{"meta": {...}, "error": {"title", "detail", "status", "type"}}`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from lib.core.config import Settings
from lib.core.errors import UpstreamError, UpstreamTimeout

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class UnkeyConfig:
    root_key: str
    api_id: str
    base_url: str = "https://api.unkey.com"

    @classmethod
    def from_settings(cls, settings: Settings) -> UnkeyConfig | None:
        """Unkey-managed keys only when both UNKEY_ROOT_KEY and UNKEY_API_ID are set."""
        if not settings.unkey_root_key or not settings.unkey_api_id:
            return None
        return cls(settings.unkey_root_key, settings.unkey_api_id, settings.unkey_api_url)


class UnkeyClient:
    def __init__(self, config: UnkeyConfig, *, client: httpx.Client | None = None):
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.http = client or httpx.Client(timeout=TIMEOUT)
        self.headers = {"Authorization": f"Bearer {config.root_key}", "Content-Type": "application/json"}

    def call(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v2/<op>; the whole answer (meta, data, pagination)."""
        try:
            resp = self.http.post(f"{self.base_url}/v2/{op}", json=body, headers=self.headers)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"Unkey did not answer in time ({op})", type="unkey_timeout") from exc
        except httpx.HTTPError as exc:
            raise UpstreamTimeout(f"Unkey could not be reached ({op}): {exc}", type="unkey_unreachable") from exc
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if resp.status_code >= 400 or not isinstance(answer, dict):
            err = (answer or {}).get("error") if isinstance(answer, dict) else None
            detail = (err.get("detail") or err.get("title")) if isinstance(err, dict) else resp.text[:200]
            raise UpstreamError(f"Unkey refused {op} (HTTP {resp.status_code}): {detail}", type="unkey_error")
        return answer

    def create_key(self, *, name: str, external_id: str, meta: dict[str, Any],
                   expires_ms: int | None = None) -> dict[str, str]:
        """keys.createKey: `{"keyId", "key"}` (the plaintext, which we do not keep)."""
        body: dict[str, Any] = {"apiId": self.config.api_id, "name": name, "externalId": external_id, "meta": meta}
        if expires_ms is not None:
            body["expires"] = expires_ms
        data = self.call("keys.createKey", body).get("data") or {}
        if not data.get("keyId"):
            raise UpstreamError("Unkey's keys.createKey answered without a keyId", type="unkey_error")
        return data

    def delete_key(self, key_id: str) -> None:
        """keys.deleteKey; a key Unkey no longer knows counts as deleted."""
        try:
            self.call("keys.deleteKey", {"keyId": key_id})
        except UpstreamError as exc:
            if "HTTP 404" not in exc.message:
                raise

    def reroll_key(self, key_id: str, grace_seconds: int) -> dict[str, str]:
        """keys.rerollKey: a new key with the same settings; the old one is revoked after
        `expiration` ms (our grace period). `{"keyId", "key"}` of the new one."""
        data = self.call("keys.rerollKey", {"keyId": key_id, "expiration": grace_seconds * 1000}).get("data") or {}
        if not data.get("keyId"):
            raise UpstreamError("Unkey's keys.rerollKey answered without a keyId", type="unkey_error")
        return data

    def list_keys(self) -> list[dict[str, Any]]:
        """apis.listKeys, every page."""
        keys: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            body: dict[str, Any] = {"apiId": self.config.api_id, "limit": 100}
            if cursor:
                body["cursor"] = cursor
            answer = self.call("apis.listKeys", body)
            keys.extend(answer.get("data") or [])
            page = answer.get("pagination") or {}
            cursor = page.get("cursor")
            if not page.get("hasMore") or not cursor:
                return keys
