"""The API key prefix has one home, the database (`private.app_settings`): keys are
minted with it, `API_KEY_PREFIX` only writes it there (`tollbooth migrate`), and the
proxy recognises a key by not being a JWT, so changing the prefix never locks keys out."""
from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from lib.chat.metering import ChatBody, authenticate, begin
from lib.core.config import Settings
from lib.core.db import PsycopgDatabase
from lib.local import migrate


def _signed_up(conn: psycopg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    uid = uuid.uuid4()
    conn.execute("insert into auth.users (id, aud, role, email, raw_user_meta_data, raw_app_meta_data) "
                 "values (%s, 'authenticated', 'authenticated', %s, '{}', '{}')", (uid, f"{uid.hex[:8]}@example.test"))
    org = conn.execute("select id from public.organizations where personal_owner_id = %s", (uid,)).fetchone()[0]
    return uid, org


def _create_key(conn: psycopg.Connection, uid: uuid.UUID, org: uuid.UUID) -> str:
    """create_api_key as the signed-in user, the way PostgREST calls it."""
    with conn.transaction():
        conn.execute("select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"sub": str(uid), "role": "authenticated"}),))
        key = conn.execute("select public.create_api_key(org_id := %s, name := 'prefixed')", (org,)).fetchone()[0]
    return str(key["key"])


def test_api_key_prefix_setting_is_written_to_the_database_and_keys_work(fresh_dsn):
    migrate.apply_all(fresh_dsn, seed=False, api_key_prefix="acme_")
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert migrate.api_key_prefix(conn) == "acme_"
        uid, org = _signed_up(conn)
        key = _create_key(conn, uid, org)
    assert key.startswith("acme_"), f"minted with the database's prefix: {key[:8]}"

    caller = authenticate({"authorization": f"Bearer {key}"}, Settings())
    assert caller.key_hash is not None, "a non-JWT bearer token is an API key, whatever its prefix"
    db = PsycopgDatabase(fresh_dsn, pool_size=1)
    try:
        body = ChatBody.model_validate({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                                        "max_tokens": 5})
        metered = begin(db, caller, body, body.model_dump(), request_id="prefix-1", endpoint="/v1/chat/completions",
                        headers={})
    finally:
        db.close()
    assert metered.grant.org_id == str(org) and metered.grant.api_key_id is not None


def test_a_malformed_prefix_is_refused_and_nothing_changes(fresh_dsn):
    for bad in ("bad.prefix_", "x", "no-underscore", "eyJ.a.b_"):
        with pytest.raises(migrate.MigrationError, match="API_KEY_PREFIX"):
            migrate.apply_all(fresh_dsn, seed=False, api_key_prefix=bad)
    with psycopg.connect(fresh_dsn) as conn:
        assert migrate.api_key_prefix(conn) == "xan_"
