"""Unkey-managed keys: each key of ours mirrored by one key at Unkey (`externalId` and
`meta.key_id` = our key id, `meta.source` = "tollbooth"), its Unkey id kept in `api_keys.unkey_key_id`.

The secret clients use is ours (verification is one hash lookup in the proxy's database
round trip); Unkey's copy carries the key's identity, expiry and lifecycle for teams that
manage keys there. Failure rules: creating a key whose mirror cannot be made removes the
key again (nothing half-made; the caller sees Unkey's error); revoking or rotating
changes our side first (it is what clients are checked against) and, when Unkey fails,
says so and leaves the repair to `sync_unkey`, which reconciles both sides.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lib.core.db import Database
from lib.core.errors import TollboothError
from lib.keys.unkey import UnkeyClient


def _expires_ms(value: Any) -> int | None:
    if not value:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return int(when.timestamp() * 1000)


def mirror(db: Database, unkey: UnkeyClient, key: dict[str, Any]) -> str:
    """Creates `key` (a key_state answer) at Unkey and records its Unkey id."""
    made = unkey.create_key(name=key["name"], external_id=str(key["id"]),
                            meta={"source": "tollbooth", "key_id": str(key["id"]), "org_id": str(key["org_id"])},
                            expires_ms=_expires_ms(key.get("expires_at")))
    db.rpc("set_unkey_key_id", {"key_id": str(key["id"]), "unkey_key_id": made["keyId"]})
    return str(made["keyId"])


def after_create(db: Database, unkey: UnkeyClient, key_id: str) -> str:
    """A key was just created here: mirror it, or remove it again and raise Unkey's error."""
    state = db.rpc("unkey_key_state", {"key_id": key_id})
    try:
        return mirror(db, unkey, state)
    except TollboothError:
        db.rpc("discard_api_key", {"key_id": key_id})
        raise


def after_revoke(db: Database, unkey: UnkeyClient, key_id: str) -> bool:
    """A key was revoked here: delete its mirror (Unkey failing raises; sync repairs)."""
    state = db.rpc("unkey_key_state", {"key_id": key_id})
    if not state.get("unkey_key_id"):
        return False
    unkey.delete_key(state["unkey_key_id"])
    db.rpc("set_unkey_key_id", {"key_id": key_id, "unkey_key_id": None})
    return True


def after_rotate(db: Database, unkey: UnkeyClient, key_id: str, grace_seconds: int) -> str | None:
    """A key was rotated here: reroll its mirror with the same grace (keys.rerollKey),
    or mirror it now if it had none."""
    state = db.rpc("unkey_key_state", {"key_id": key_id})
    if not state.get("unkey_key_id"):
        return mirror(db, unkey, state) if state.get("usable") else None
    made = unkey.reroll_key(state["unkey_key_id"], grace_seconds)
    db.rpc("set_unkey_key_id", {"key_id": key_id, "unkey_key_id": made["keyId"]})
    return str(made["keyId"])


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def sync_unkey(db: Database, unkey: UnkeyClient) -> SyncReport:
    """Both sides in step: usable keys without a mirror get one; keys that no longer work
    here lose theirs; Unkey keys made by us (`meta.source` tollbooth, `meta.key_id`) whose key here is
    gone, unusable or mirrored by another Unkey key are deleted. Keeps going past one
    key's failure and reports it."""
    report = SyncReport()
    plan = db.rpc("unkey_sync_plan", {})
    for key in plan["create"]:
        try:
            report.created.append(mirror(db, unkey, key))
        except TollboothError as exc:
            report.errors.append(f"create {key['id']}: {exc.message}")
    for key in plan["delete"]:
        try:
            unkey.delete_key(key["unkey_key_id"])
            db.rpc("set_unkey_key_id", {"key_id": str(key["id"]), "unkey_key_id": None})
            report.deleted.append(str(key["unkey_key_id"]))
        except TollboothError as exc:
            report.errors.append(f"delete {key['id']}: {exc.message}")
    linked: dict[str, str] = db.rpc("unkey_sync_plan", {})["linked"]
    mirrored = set(linked.values())
    try:
        remote = unkey.list_keys()
    except TollboothError as exc:
        report.errors.append(f"list: {exc.message}")
        return report
    for item in remote:
        meta = item.get("meta") or {}
        key_id, external = item.get("keyId"), meta.get("key_id")
        ours = meta.get("source") == "tollbooth" and _is_uuid(external)
        if not key_id or not ours or key_id in mirrored or (item.get("expires") and linked.get(str(external))):
            continue  # not ours, in step, or the old half of a rotation still in its grace at Unkey
        try:
            unkey.delete_key(key_id)
            report.orphans_deleted.append(key_id)
        except TollboothError as exc:
            report.errors.append(f"delete orphan {key_id}: {exc.message}")
    return report
