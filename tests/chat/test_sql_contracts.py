"""The contract between the chat proxy and its two SQL functions: the keys
`begin_chat_request` and `finish_chat_request` answer are exactly the fields of
`Grant` and `Settlement`, on every path (reserve; settle; release; replay). When the
SQL grows or loses a key, this fails and names it."""
from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from lib.chat.metering import Grant, Settlement
from lib.core.errors import TollboothError


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _required(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}


@pytest.fixture
def user_id(conn) -> uuid.UUID:
    uid = uuid.uuid4()
    conn.execute("insert into auth.users (id, aud, role, email, raw_user_meta_data, raw_app_meta_data) "
                 "values (%s, 'authenticated', 'authenticated', %s, '{}', '{}')", (uid, f"{uid.hex[:8]}@example.test"))
    return uid


def _begin(conn, user_id, request_id: str) -> dict:
    return conn.execute(
        "select public.begin_chat_request(request_id := %s, model := 'gpt-4o-mini', prompt_tokens_bound := 50, "
        "completion_tokens_limit := 20, user_id := %s)", (request_id, user_id)).fetchone()[0]


def _finish(conn, grant: dict, request_id: str, prompt_tokens: int | None) -> dict:
    return conn.execute(
        "select public.finish_chat_request(request_id := %s, status := %s, http_status := 200, "
        "endpoint := '/v1/chat/completions', org_id := %s, model := %s, user_id := %s, "
        "prompt_tokens := %s, completion_tokens := %s)",
        (request_id, "succeeded" if prompt_tokens is not None else "upstream_error", grant["org_id"],
         grant["model"], grant["user_id"], prompt_tokens, 5 if prompt_tokens is not None else None)).fetchone()[0]


def test_begin_answers_exactly_the_grant(conn, user_id):
    answer = _begin(conn, user_id, "contract-begin")
    assert set(answer) == _fields(Grant), f"begin_chat_request keys drifted: {sorted(set(answer) ^ _fields(Grant))}"
    grant = Grant.from_sql(answer)
    assert grant.reserved > 0 and grant.remaining >= 0 and grant.completion_tokens_limit == 20


def test_finish_answers_exactly_the_settlement_on_every_path(conn, user_id):
    settled = _finish(conn, _begin(conn, user_id, "contract-settle"), "contract-settle", 40)
    assert set(settled) == _fields(Settlement), f"settle keys drifted: {sorted(set(settled) ^ _fields(Settlement))}"
    assert Settlement.from_sql(settled).charged == Settlement.from_sql(settled).credits

    released = _finish(conn, _begin(conn, user_id, "contract-release"), "contract-release", None)
    assert _required(Settlement) <= set(released) <= _fields(Settlement), f"release keys: {sorted(released)}"
    assert Settlement.from_sql(released).status == "released"

    grant = _begin(conn, user_id, "contract-replay")
    first = _finish(conn, grant, "contract-replay", 40)
    replay = _finish(conn, grant, "contract-replay", 40)
    assert _required(Settlement) <= set(replay) <= _fields(Settlement), f"replay keys: {sorted(replay)}"
    assert Settlement.from_sql(replay).replayed and replay["charged"] == first["charged"]


def test_a_missing_key_fails_loudly_and_an_extra_one_is_ignored():
    answer = {"org_id": str(uuid.uuid4()), "api_key_id": None, "project_id": None, "user_id": None,
              "plan_id": "free", "model": "gpt-4o-mini", "reserved": 10, "remaining": 90,
              "completion_tokens_limit": 5, "limit_capped": False}
    assert Grant.from_sql({**answer, "new_key": 1}).reserved == 10
    broken = dict(answer)
    del broken["remaining"]
    with pytest.raises(TollboothError, match="remaining"):
        Grant.from_sql(broken)
    with pytest.raises(TollboothError, match="not an object"):
        Settlement.from_sql(json.loads("[1]"))
