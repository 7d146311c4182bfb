"""Who may call the proxy: API keys and Supabase JWTs, and every way they are refused."""
from __future__ import annotations

import jwt as pyjwt

from tests.support.chat import chat_body
from tests.support.secrets import JWT_SECRET, WRONG_JWT_SECRET


def test_missing_or_malformed_authorization_is_401(stack):
    import httpx

    for headers in ({}, {"authorization": "Basic abc"}, {"authorization": "Bearer not-a-jwt"}):
        r = httpx.post(f"{stack.base}/v1/chat/completions", json=chat_body(), headers=headers)
        assert r.status_code == 401, f"{headers}: {r.status_code}"
        assert r.json()["error"]["type"] in ("missing_credentials", "invalid_credentials", "invalid_api_key")
    assert len(stack.upstream.requests) == 0


def test_unknown_revoked_and_expired_keys_are_401_with_the_reason(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    r = stack.post(token="xan_" + "0" * 64, json=chat_body())
    assert r.status_code == 401 and "invalid API key" in r.json()["error"]["message"]

    revoked = stack.key(owner, org)
    stack.sql.execute("update api_keys set status = 'revoked', revoked_at = now() where id = %s", (revoked["id"],))
    r = stack.post(token=revoked["key"], json=chat_body())
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]

    expiring = stack.key(owner, org, expires_at="2999-01-01T00:00:00Z")
    stack.sql.execute("update api_keys set expires_at = now() - interval '1 second' where id = %s", (expiring["id"],))
    r = stack.post(token=expiring["key"], json=chat_body())
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    assert len(stack.upstream.requests) == 0 and stack.usage(org) == []


def test_key_of_a_banned_owners_org_is_401(stack):
    owner = stack.user("owner")
    personal = stack.personal_org(owner)
    key = stack.key(owner, personal)
    stack.sql.execute("update profiles set role = 'banned' where id = %s", (owner.id,))
    r = stack.post(token=key["key"], json=chat_body())
    assert r.status_code == 401 and "banned" in r.json()["error"]["message"]


def test_jwt_bills_the_personal_org_or_a_member_org(stack):
    owner, member = stack.user("owner"), stack.user("member")
    team = stack.team(owner, member=member)
    r = stack.post(token=stack.jwt(member), json=chat_body(max_tokens=2))
    assert r.status_code == 200, r.text
    assert len(stack.usage(stack.personal_org(member))) == 1, "no X-Org-Id: the personal org pays"
    r = stack.post(token=stack.jwt(member), json=chat_body(max_tokens=2), headers={"x-org-id": str(team)})
    assert r.status_code == 200, r.text
    row = stack.usage(team)[0]
    assert str(row["user_id"]) == str(member.id), "the user is recorded"


def test_jwt_for_an_org_the_user_is_not_in_is_403(stack):
    owner, outsider = stack.user("owner"), stack.user("outsider")
    team = stack.team(owner)
    r = stack.post(token=stack.jwt(outsider), json=chat_body(), headers={"x-org-id": str(team)})
    assert r.status_code == 403
    r = stack.post(token=stack.jwt(outsider), json=chat_body(), headers={"x-org-id": "not-a-uuid"})
    assert r.status_code == 400
    assert stack.usage(team) == []


def test_banned_or_inactive_user_jwt_is_403(stack):
    banned, inactive = stack.user("banned"), stack.user("inactive")
    stack.sql.execute("update profiles set role = 'banned' where id = %s", (banned.id,))
    stack.sql.execute("update profiles set is_active = false where id = %s", (inactive.id,))
    for person in (banned, inactive):
        r = stack.post(token=stack.jwt(person), json=chat_body())
        assert r.status_code == 403, r.text


def test_expired_or_forged_jwt_is_401(stack):
    person = stack.user("someone")
    forged = pyjwt.encode({"sub": str(person.id), "role": "authenticated", "aud": "authenticated", "exp": 4102444800},
                          WRONG_JWT_SECRET, algorithm="HS256")
    expired = pyjwt.encode({"sub": str(person.id), "role": "authenticated", "aud": "authenticated", "exp": 1},
                           JWT_SECRET, algorithm="HS256")
    for token in (forged, expired):
        r = stack.post(token=token, json=chat_body())
        assert r.status_code == 401
