"""Unkey-managed keys (issue 12) through `tollbooth keys create|revoke|rotate|sync-unkey`,
with Unkey's v2 API faked by respx. Payload shapes from Unkey's API reference
(https://www.unkey.com/docs/api-reference/v2: keys.createKey, keys.deleteKey,
keys.rerollKey, apis.listKeys; every answer `{"meta": {"requestId"}, "data": ...}`,
errors `{"meta", "error": {"title", "detail", "status", "type"}}`)."""
from __future__ import annotations

import json

import httpx
import psycopg
import pytest
import respx

from lib.cli import main
from tests.support.metering import begin
from tests.support.personas import make_team, make_user
from tests.support.server import env

UNKEY = "https://api.unkey.com"
META = {"requestId": "req_2cGKbMxRyIzhCxo1Idjz8q"}


def ok(data) -> httpx.Response:
    return httpx.Response(200, json={"meta": META, "data": data})


def unkey_error(status: int, title: str, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"meta": META, "error": {
        "title": title, "detail": detail, "status": status,
        "type": f"https://unkey.com/docs/errors/unkey/application/{title.lower().replace(' ', '_')}"}})


@pytest.fixture
def team(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        sql.execute("update api_keys set status = 'revoked'")  # the seed's demo key: not this test's to sync
        owner = make_user(sql, "owner")
        org = make_team(sql, owner, slug="unkey-team")
    return fresh_dsn, owner, org


@pytest.fixture
def unkey_on():
    with env(UNKEY_ROOT_KEY="unkey_root_test", UNKEY_API_ID="api_1234abcd", UNKEY_API_URL=None):
        yield


def tb(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def keys(dsn) -> list[tuple]:
    with psycopg.connect(dsn) as c:
        return c.execute("select id, status, unkey_key_id from api_keys where org_id in "
                         "(select id from organizations where slug = 'unkey-team') order by created_at").fetchall()


def test_without_the_settings_nothing_calls_unkey(team, capsys):
    dsn, *_ = team
    with env(UNKEY_ROOT_KEY=None, UNKEY_API_ID=None), respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="api.unkey.com").mock(return_value=ok({}))
        code, _, err = tb(capsys, "keys", "create", "unkey-team", "--name", "plain", "--database-url", dsn)
        assert code == 0, err
        key_id = keys(dsn)[0][0]
        assert tb(capsys, "keys", "revoke", "unkey-team", str(key_id), "--database-url", dsn)[0] == 0
        assert tb(capsys, "keys", "sync-unkey", "--database-url", dsn)[0] == 1, "sync says what is missing"
    assert route.call_count == 0
    assert keys(dsn)[0][2] is None


def test_create_revoke_and_rotate_are_mirrored_at_unkey(team, unkey_on, capsys):
    dsn, *_ = team
    with respx.mock(base_url=UNKEY) as mock:
        create = mock.post("/v2/keys.createKey").mock(return_value=ok({"keyId": "key_first", "key": "uk_1"}))
        code, out, err = tb(capsys, "keys", "create", "unkey-team", "--name", "mirrored", "--database-url", dsn)
        assert code == 0 and "mirrored at Unkey as key_first" in err
        [(key_id, _, unkey_id)] = keys(dsn)
        assert unkey_id == "key_first"
        sent = json.loads(create.calls[0].request.content)
        assert sent["apiId"] == "api_1234abcd" and sent["externalId"] == str(key_id) and sent["name"] == "mirrored"
        assert sent["meta"]["source"] == "tollbooth" and sent["meta"]["key_id"] == str(key_id)
        assert create.calls[0].request.headers["authorization"] == "Bearer unkey_root_test"
        secret = out.strip()

        reroll = mock.post("/v2/keys.rerollKey").mock(return_value=ok({"keyId": "key_second", "key": "uk_2"}))
        code, out, err = tb(capsys, "keys", "rotate", "unkey-team", str(key_id), "--grace-seconds", "120",
                            "--database-url", dsn)
        assert code == 0, err
        assert json.loads(reroll.calls[0].request.content) == {"keyId": "key_first", "expiration": 120000}
        assert keys(dsn)[0][2] == "key_second"
        with psycopg.connect(dsn) as c:  # both secrets work during the grace period; verification is local
            assert begin(c, "old", key=secret, completion_tokens_limit=5)["api_key_id"] == str(key_id)
            assert begin(c, "new", key=out.strip(), completion_tokens_limit=5)["api_key_id"] == str(key_id)
            c.rollback()

        delete = mock.post("/v2/keys.deleteKey").mock(return_value=ok({}))
        assert tb(capsys, "keys", "revoke", "unkey-team", str(key_id), "--database-url", dsn)[0] == 0
        assert json.loads(delete.calls[0].request.content) == {"keyId": "key_second"}
        assert keys(dsn)[0][1:] == ("revoked", None)


@pytest.mark.parametrize("failure", [unkey_error(500, "Internal Server Error", "something broke"),
                                     unkey_error(403, "Forbidden", "root key lacks api.*.create_key"),
                                     httpx.ConnectError("connection refused")])
def test_unkey_down_at_creation_is_a_clear_error_and_nothing_half_made(team, unkey_on, capsys, failure):
    dsn, *_ = team
    with respx.mock(base_url=UNKEY) as mock:
        route = mock.post("/v2/keys.createKey")
        route.mock(side_effect=failure) if isinstance(failure, Exception) else route.mock(return_value=failure)
        code, out, err = tb(capsys, "keys", "create", "unkey-team", "--name", "doomed", "--database-url", dsn)
    assert code == 1 and "Unkey" in err and "not created" in err and out == ""
    assert keys(dsn) == [], "the key was removed again"


def test_unkey_down_at_revocation_still_revokes_here_and_sync_repairs(team, unkey_on, capsys):
    dsn, *_ = team
    with respx.mock(base_url=UNKEY) as mock:
        mock.post("/v2/keys.createKey").mock(return_value=ok({"keyId": "key_r", "key": "uk"}))
        tb(capsys, "keys", "create", "unkey-team", "--name", "r", "--database-url", dsn)
        key_id = keys(dsn)[0][0]
        mock.post("/v2/keys.deleteKey").mock(return_value=unkey_error(503, "Service Unavailable", "try later"))
        code, _, err = tb(capsys, "keys", "revoke", "unkey-team", str(key_id), "--database-url", dsn)
        assert code == 1 and "sync-unkey" in err
        assert keys(dsn)[0][1:] == ("revoked", "key_r"), "revoked here; the mirror is still to delete"
    with respx.mock(base_url=UNKEY) as mock:
        delete = mock.post("/v2/keys.deleteKey").mock(return_value=ok({}))
        mock.post("/v2/apis.listKeys").mock(return_value=httpx.Response(200, json={
            "meta": META, "data": [], "pagination": {"hasMore": False}}))
        code, out, _ = tb(capsys, "keys", "sync-unkey", "--database-url", dsn)
    assert code == 0 and "deleted=1" in out and delete.call_count == 1
    assert keys(dsn)[0][1:] == ("revoked", None)


def test_sync_mirrors_keys_made_through_postgrest_and_deletes_orphans(team, unkey_on, capsys):
    dsn, owner, org = team
    from tests.support.metering import create_key

    with psycopg.connect(dsn, autocommit=True) as c:
        made = create_key(c, owner, org, name="from the frontend")
    listed = [
        {"keyId": "key_orphan", "start": "uk_abc", "enabled": True, "name": "gone", "createdAt": 1735689600000,
         "meta": {"source": "tollbooth", "key_id": "7d1b3c7e-0a35-4a6b-9f39-2d0f2b1c9a11", "org_id": str(org)}},
        {"keyId": "key_foreign", "start": "xx_abc", "enabled": True, "name": "someone else's",
         "createdAt": 1735689600000, "meta": {"team": "other"}},
    ]
    with respx.mock(base_url=UNKEY) as mock:
        create = mock.post("/v2/keys.createKey").mock(return_value=ok({"keyId": "key_synced", "key": "uk"}))
        mock.post("/v2/apis.listKeys").mock(side_effect=[
            httpx.Response(200, json={"meta": META, "data": listed[:1], "pagination": {"cursor": "c1", "hasMore": True}}),
            httpx.Response(200, json={"meta": META, "data": listed[1:], "pagination": {"hasMore": False}}),
        ])
        delete = mock.post("/v2/keys.deleteKey").mock(return_value=ok({}))
        code, out, err = tb(capsys, "keys", "sync-unkey", "--database-url", dsn)
    assert code == 0, err
    assert "created=1" in out and "orphans_deleted=1" in out
    assert json.loads(create.calls[0].request.content)["externalId"] == str(made["id"])
    assert [json.loads(c.request.content) for c in delete.calls] == [{"keyId": "key_orphan"}]
    assert keys(dsn)[0][2] == "key_synced"
