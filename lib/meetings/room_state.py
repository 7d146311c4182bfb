"""A room's session state, with its sensitive fields sealed by AES-GCM before they reach
the database and unsealed after.

Keys come from ROOMS_ENCRYPTION_KEYS, `kid:base64key,…` (16, 24 or 32 byte keys): the
first seals, every one unseals (so a key can be rotated in, then the old one retired
after `tollbooth rooms rotate-key`). The associated data is the row id (the meeting id)
and the field name, so a ciphertext moved to another row or field fails to open. A
value that fails to open answers 409 and is logged.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field

from lib.core.config import Settings
from lib.core.db import Database
from lib.core.errors import BadRequest, Conflict, ServiceUnavailable
from lib.core.log import get_logger

log = get_logger("rooms")
MAX_SECRET_BYTES = 16 * 1024


class Keyring:
    def __init__(self, keys: list[tuple[str, bytes]]):
        if not keys:
            raise ValueError("ROOMS_ENCRYPTION_KEYS has no key")
        self.keys = dict(keys)
        if len(self.keys) != len(keys):
            raise ValueError("ROOMS_ENCRYPTION_KEYS names a key id twice")
        self.current = keys[0][0]

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        keys = []
        for item in (x.strip() for x in spec.split(",")):
            if not item:
                continue
            kid, sep, b64 = item.partition(":")
            if not sep or not kid or not kid.replace("-", "").replace("_", "").isalnum():
                raise ValueError("ROOMS_ENCRYPTION_KEYS must be kid:base64key[,kid:base64key…]")
            try:
                key = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"ROOMS_ENCRYPTION_KEYS: key {kid} is not base64") from exc
            if len(key) not in (16, 24, 32):
                raise ValueError(f"ROOMS_ENCRYPTION_KEYS: key {kid} must be 16, 24 or 32 bytes")
            keys.append((kid, key))
        return cls(keys)


def keyring(settings: Settings) -> Keyring:
    """The keys of ROOMS_ENCRYPTION_KEYS (503 naming it when unset or malformed)."""
    try:
        return Keyring.parse(settings.require("rooms_encryption_keys"))
    except ValueError as exc:
        raise ServiceUnavailable(str(exc), type="missing_setting") from exc


def new_key_spec(kid: str) -> str:
    """A fresh `kid:base64key` entry (32 bytes) to put first in ROOMS_ENCRYPTION_KEYS."""
    return f"{kid}:{base64.b64encode(os.urandom(32)).decode()}"


def _aad(row_id: str, field: str) -> bytes:
    return f"rooms:{row_id}:{field}".encode()


def seal(ring: Keyring, row_id: str, field: str, value: Any) -> dict[str, str]:
    nonce = os.urandom(12)
    plain = json.dumps(value, separators=(",", ":")).encode()
    ct = AESGCM(ring.keys[ring.current]).encrypt(nonce, plain, _aad(row_id, field))
    return {"kid": ring.current, "nonce": base64.b64encode(nonce).decode(), "ct": base64.b64encode(ct).decode()}


@dataclass
class Tampered(Exception):
    row_id: str
    field: str
    reason: str


def unseal(ring: Keyring, row_id: str, field: str, sealed: Any) -> Any:
    try:
        key = ring.keys[sealed["kid"]]
    except (KeyError, TypeError) as exc:
        raise Tampered(row_id, field, f"no key {sealed.get('kid') if isinstance(sealed, dict) else '?'}") from exc
    try:
        plain = AESGCM(key).decrypt(base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ct"]),
                                    _aad(row_id, field))
    except (InvalidTag, KeyError, ValueError, binascii.Error) as exc:
        raise Tampered(row_id, field, "authentication failed") from exc
    return json.loads(plain)


def unseal_all(ring: Keyring, row_id: str, secrets: dict[str, Any]) -> dict[str, Any]:
    try:
        return {field: unseal(ring, row_id, field, sealed) for field, sealed in secrets.items()}
    except Tampered as t:
        log.error("room state of meeting %s: field %r does not open (%s); tampered or wrong key",
                  t.row_id, t.field, t.reason)
        raise Conflict(f"the room state's sensitive field {t.field!r} failed its integrity check "
                       "(tampered or sealed with a key we no longer have)", type="room_state_tampered") from t


class RoomStateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: dict[str, Any] = Field(default_factory=dict)
    # sensitive fields: sealed before they leave this process
    secrets: dict[str, Any] = Field(default_factory=dict, max_length=64)
    version: int | None = Field(default=None, ge=0)


def _answer(ring: Keyring, row: dict[str, Any]) -> dict[str, Any]:
    mid = str(row["meeting_id"])
    return {"meeting_id": mid, "state": row["state"], "secrets": unseal_all(ring, mid, row["secrets"] or {}),
            "version": row["version"], "updated_at": row.get("updated_at")}


def get_state(db: Database, ring: Keyring, user_id: uuid.UUID, meeting_id: uuid.UUID) -> dict[str, Any]:
    return _answer(ring, db.rpc("room_state_get", {"meeting_id": str(meeting_id), "user_id": str(user_id)}))


def put_state(db: Database, ring: Keyring, user_id: uuid.UUID, meeting_id: uuid.UUID,
              body: RoomStateBody) -> dict[str, Any]:
    mid = str(meeting_id)
    sealed = {}
    for field, value in body.secrets.items():
        if not field or len(field) > 100 or len(json.dumps(value)) > MAX_SECRET_BYTES:
            raise BadRequest(f"secret field {field!r}: names up to 100 characters, values up to 16 KiB")
        sealed[field] = seal(ring, mid, field, value)
    return _answer(ring, db.rpc("room_state_put", {
        "meeting_id": mid, "user_id": str(user_id), "state": body.state, "secrets": sealed, "key_id": ring.current,
        "expected_version": body.version}))


def rotate(db: Database, ring: Keyring, *, batch: int = 100) -> dict[str, int]:
    """Re-seals every room not sealed with the current key, a batch at a time; each row
    is one transaction, so an interrupted run resumes where it stopped. Rows that do
    not open are counted and left alone (409 on read)."""
    rotated = failed = skipped = 0
    seen: set[str] = set()
    while True:
        rows = [r for r in db.rpc("rooms_to_rotate", {"key_id": ring.current, "batch": batch})
                if r["meeting_id"] not in seen]
        if not rows:
            return {"rotated": rotated, "failed": failed, "skipped": skipped}
        for row in rows:
            mid = str(row["meeting_id"])
            try:
                plain = {f: unseal(ring, mid, f, s) for f, s in row["secrets"].items()}
            except Tampered as t:
                log.error("rotate-key: room state of meeting %s field %r does not open (%s)", mid, t.field, t.reason)
                seen.add(mid)
                failed += 1
                continue
            resealed = {f: seal(ring, mid, f, v) for f, v in plain.items()}
            done = db.rpc("room_state_rotate", {"meeting_id": mid, "key_id": ring.current, "secrets": resealed,
                                                "previous": row["secrets"]})
            if done["rotated"]:
                rotated += 1
            else:
                seen.add(mid)  # changed meanwhile; a later run picks it up if it is still on an old key
                skipped += 1
