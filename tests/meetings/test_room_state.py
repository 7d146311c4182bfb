"""Encrypted room state: sealing (AES-GCM, row id + field as associated data), tamper
and move detection (409), key rotation (resumable), and GET/PUT through the server."""
from __future__ import annotations

import base64
import json

import httpx
import pytest

from lib.core.errors import Conflict
from lib.meetings.room_state import Keyring, RoomStateBody, get_state, put_state, rotate, seal, unseal_all
from tests.support.daily import make_meeting
from tests.support.pg import fails
from tests.support.secrets import ROOMS_KEY_A, ROOMS_KEY_B, bearer
from tests.support.stripe import ConnDatabase

RING_A = Keyring.parse(ROOMS_KEY_A)
RING_BA = Keyring.parse(f"{ROOMS_KEY_B},{ROOMS_KEY_A}")


def test_seal_opens_only_for_its_row_and_field():
    sealed = seal(RING_A, "row-1", "token", {"secret": "s3"})
    assert "s3" not in json.dumps(sealed)
    assert unseal_all(RING_A, "row-1", {"token": sealed}) == {"token": {"secret": "s3"}}
    with pytest.raises(Conflict):
        unseal_all(RING_A, "row-2", {"token": sealed})
    with pytest.raises(Conflict):
        unseal_all(RING_A, "row-1", {"other": sealed})
    flipped = dict(sealed, ct=base64.b64encode(bytes([base64.b64decode(sealed["ct"])[0] ^ 1])
                                               + base64.b64decode(sealed["ct"])[1:]).decode())
    with pytest.raises(Conflict) as err:
        unseal_all(RING_A, "row-1", {"token": flipped})
    assert err.value.status == 409


@pytest.mark.parametrize("spec", ["", "nokey", "k:notbase64!", "k:" + base64.b64encode(b"short").decode(),
                                  f"{ROOMS_KEY_A},{ROOMS_KEY_A}"])
def test_bad_key_settings_are_refused(spec):
    with pytest.raises(ValueError):
        Keyring.parse(spec)


def test_put_get_rotate_in_the_database(conn, cast):
    db = ConnDatabase(conn)
    mid, _ = make_meeting(conn, cast.team, cast.owner)
    body = RoomStateBody(state={"topic": "plan"}, secrets={"api_token": "tok-123"})
    out = put_state(db, RING_A, cast.member.id, mid, body)
    assert out["secrets"] == {"api_token": "tok-123"} and out["version"] == 1
    stored = conn.execute("select secrets::text, key_id from public.rooms where meeting_id = %s", (mid,)).fetchone()
    assert "tok-123" not in stored[0] and stored[1] == "ka", "no plaintext in the database"
    with fails(conn, "PT400", "sealed values"):
        conn.execute("select public.room_state_put(meeting_id := %s, user_id := %s, state := '{}', "
                     "secrets := '{\"api_token\": \"tok-123\"}', key_id := 'ka')", (mid, cast.member.id))
    assert rotate(db, RING_BA) == {"rotated": 1, "failed": 0, "skipped": 0}
    assert conn.execute("select key_id from public.rooms where meeting_id = %s", (mid,)).fetchone()[0] == "kb"
    assert rotate(db, RING_BA)["rotated"] == 0, "resumable: nothing left to do"
    assert get_state(db, Keyring.parse(ROOMS_KEY_B), cast.member.id, mid)["secrets"] == {"api_token": "tok-123"}
    with pytest.raises(Conflict):
        get_state(db, RING_A, cast.member.id, mid)  # the old key alone no longer opens it


def test_tampered_rows_are_counted_by_rotation(conn, cast):
    db = ConnDatabase(conn)
    mid, _ = make_meeting(conn, cast.team, cast.owner)
    other, _ = make_meeting(conn, cast.team, cast.owner)
    put_state(db, RING_A, cast.owner.id, mid, RoomStateBody(secrets={"k": "v"}))
    put_state(db, RING_A, cast.owner.id, other, RoomStateBody(secrets={"k": "w"}))
    # move other's ciphertext onto mid: same key, wrong row
    conn.execute("update public.rooms set secrets = (select secrets from public.rooms where meeting_id = %s) "
                 "where meeting_id = %s", (other, mid))
    with pytest.raises(Conflict):
        get_state(db, RING_A, cast.owner.id, mid)
    assert rotate(db, RING_BA) == {"rotated": 1, "failed": 1, "skipped": 0}


def test_room_state_over_http(world):
    p = world.people
    with world.connect() as c:
        mid, _ = make_meeting(c, p.team, p.owner)
    url = f"{world.base}/api/rooms/{mid}/state"
    r = httpx.put(url, json={"state": {"slide": 3}, "secrets": {"pin": "4242"}}, headers=bearer(p.member), timeout=30)
    assert r.status_code == 200 and r.json()["secrets"] == {"pin": "4242"}, r.text
    r = httpx.get(url, headers=bearer(p.admin), timeout=30)
    assert r.json()["state"] == {"slide": 3} and r.json()["secrets"] == {"pin": "4242"}
    assert httpx.get(url, headers=bearer(p.outsider), timeout=30).status_code == 404
    assert httpx.get(url, headers=bearer(p.banned), timeout=30).status_code == 403
    assert httpx.get(url, timeout=30).status_code == 401
    stale = httpx.put(url, json={"state": {}, "version": 0}, headers=bearer(p.member), timeout=30)
    assert stale.status_code == 409
    with world.connect() as c:
        c.execute("update public.rooms set secrets = jsonb_set(secrets, '{pin,ct}', to_jsonb(%s::text)) "
                  "where meeting_id = %s", (base64.b64encode(b"x" * 20).decode(), mid))
    r = httpx.get(url, headers=bearer(p.member), timeout=30)
    assert r.status_code == 409 and r.json()["error"]["type"] == "room_state_tampered"
