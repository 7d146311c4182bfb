"""The chat proxy end to end: real server, real database, fake OpenAI upstream."""
from __future__ import annotations

import json
import math
from decimal import Decimal

import openai

from tests.support.chat import chat_body, expected_cost
from tests.support.secrets import OPENAI_API_KEY


def _team_with_key(stack, credits=None):
    owner = stack.user("owner")
    org = stack.team(owner)
    if credits is not None:
        stack.set_balance(org, credits)
    key = stack.key(owner, org)
    return owner, org, key


def test_non_streaming_relays_json_and_settles_exactly(stack):
    owner, org, key = _team_with_key(stack)
    before = stack.balance(org)
    r = stack.post(token=key["key"], json=chat_body(max_tokens=8))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"].startswith("echo")
    usage = body["usage"]
    rows = stack.usage(org)
    assert len(rows) == 1, "one usage row per call"
    row = rows[0]
    cost = expected_cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert row["cost_usd"] == cost, "cost_usd is exact numeric, from model_prices"
    assert row["credits"] == math.ceil(cost * 1000), "credits = ceil(cost * credits_per_usd)"
    assert (row["prompt_tokens"], row["completion_tokens"], row["status"], row["estimated"]) == \
        (usage["prompt_tokens"], usage["completion_tokens"], "succeeded", False)
    assert row["upstream_id"] == body["id"] and row["api_key_id"] is not None and row["request_id"] == r.headers["x-request-id"]
    assert stack.balance(org) == before - row["credits"], "charged exactly the settled credits"
    assert r.headers["x-credits-remaining"] == str(before - row["credits"])
    assert float(r.headers["x-tollbooth-overhead-ms"]) >= 0
    stack.assert_ledger_consistent(org)
    n_api, status = stack.sql.execute("select count(*), max(status_code) from api_requests where org_id = %s", (org,)).fetchone()
    assert (n_api, status) == (1, 200), "one api_requests row in the same transaction"
    count, last_used = stack.sql.execute("select usage_count, last_used_at from api_keys where id = %s", (key["id"],)).fetchone()
    assert count == 1 and last_used is not None
    sent = stack.upstream.requests[-1]
    assert sent["headers"]["authorization"] == f"Bearer {OPENAI_API_KEY}", "upstream gets our key, never the client's"
    assert sent["body"]["max_tokens"] == 8


def test_no_limit_caps_completion_to_what_the_balance_affords(stack):
    owner, org, key = _team_with_key(stack, credits=3)
    r = stack.post(token=key["key"], json=chat_body())
    assert r.status_code == 200, r.text
    sent = stack.upstream.requests[-1]["body"]
    # 3 credits = $0.003; at $0.60/1M output that is at most 5000 tokens, minus the prompt
    assert 0 < sent["max_completion_tokens"] <= 5000, "the proxy sets a completion cap upstream"
    assert stack.balance(org) >= 0
    stack.assert_ledger_consistent(org)


def test_streaming_with_usage_requested(stack):
    owner, org, key = _team_with_key(stack)
    body = chat_body(stream=True, stream_options={"include_usage": True}, max_tokens=5)
    with __import__("httpx").stream("POST", f"{stack.base}/v1/chat/completions", json=body,
                                     headers={"authorization": f"Bearer {key['key']}"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5, "usage chunk passed on"
    row = stack.wait_for_usage(org)[0]
    assert row["completion_tokens"] == 5 and row["stream"] and not row["estimated"] and row["credits"] >= 1
    assert row["cost_usd"] == expected_cost(chunks[-1]["usage"]["prompt_tokens"], 5), "streams are never recorded as $0"
    stack.assert_ledger_consistent(org)


def test_streaming_without_usage_requested_hides_the_usage_chunk_but_still_charges(stack):
    owner, org, key = _team_with_key(stack)
    before = stack.balance(org)
    with __import__("httpx").stream("POST", f"{stack.base}/api/chat", json=chat_body(stream=True, max_tokens=4),
                                     headers={"authorization": f"Bearer {key['key']}"}) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] for c in chunks), "no usage-only chunk reaches a client that did not ask"
    assert all("usage" not in c for c in chunks), "nor a usage key it did not ask for"
    assert stack.upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}, "always asked upstream"
    row = stack.wait_for_usage(org)[0]
    assert row["completion_tokens"] == 4 and not row["estimated"]
    assert stack.balance(org) == before - row["credits"]
    stack.assert_ledger_consistent(org)


def test_openai_sdk_end_to_end(stack):
    owner, org, key = _team_with_key(stack)
    client = openai.OpenAI(api_key=key["key"], base_url=f"{stack.base}/v1", max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi sdk"}],
                                                max_tokens=6)
    assert completion.usage.completion_tokens <= 6 and completion.choices[0].message.content
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "stream please"}],
                                            stream=True, stream_options={"include_usage": True}, max_tokens=3)
    parts = list(stream)
    assert parts[-1].usage is not None and parts[-1].usage.completion_tokens == 3
    rows = stack.wait_for_usage(org, 2)
    assert [r["stream"] for r in rows] == [False, True]
    assert sum(r["credits"] for r in rows) >= 2
    stack.assert_ledger_consistent(org)


def test_cached_and_reasoning_tokens_are_priced(stack):
    owner, org, key = _team_with_key(stack)
    stack.upstream.default_headers = {"x-fake-cached-tokens": "6", "x-fake-reasoning-tokens": "2"}
    r = stack.post(token=key["key"], json=chat_body("one two three four five six seven eight nine ten " * 3, max_tokens=8))
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    row = stack.usage(org)[0]
    assert row["cached_tokens"] == 6 and row["reasoning_tokens"] == 2
    assert row["cost_usd"] == expected_cost(usage["prompt_tokens"], usage["completion_tokens"], cached=6), \
        "cached input at the cached price; reasoning tokens inside completion at the output price"


def test_meeting_and_project_attribution(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    project = stack.sql.execute("insert into projects (org_id, name) values (%s, 'p') returning id", (org,)).fetchone()[0]
    key = stack.key(owner, org, project_id=project)
    # X-Meeting-Id must name a meeting of the org the call is billed to (tests/meetings covers the refusal)
    meeting = str(stack.sql.execute("insert into meetings (org_id, room_name) values (%s, %s) returning id",
                                    (org, f"room-{org.hex[:8]}" if hasattr(org, "hex") else "room-attr")).fetchone()[0])
    r = stack.post(token=key["key"], json=chat_body(max_tokens=2), headers={"x-meeting-id": meeting})
    assert r.status_code == 200
    row = stack.usage(org)[0]
    assert str(row["project_id"]) == str(project) and str(row["meeting_id"]) == meeting
    bad = stack.post(token=key["key"], json=chat_body(max_tokens=2), headers={"x-meeting-id": "nope"})
    assert (bad.status_code == 400 and "X-Meeting-Id" in bad.json()["error"]["message"].title()) or "x-meeting-id" in bad.text


def test_bad_bodies_are_400_and_change_nothing(stack):
    owner, org, key = _team_with_key(stack)
    before = stack.balance(org)
    cases = [
        ("not json", b"{nope"),
        ("not an object", b"[1,2]"),
        ("no model", json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()),
        ("empty messages", json.dumps({"model": "gpt-4o-mini", "messages": []}).encode()),
        ("stream not bool", json.dumps({**chat_body(), "stream": "yes"}).encode()),
        ("max_tokens zero", json.dumps({**chat_body(), "max_tokens": 0}).encode()),
        ("max_tokens string", json.dumps({**chat_body(), "max_tokens": "many"}).encode()),
    ]
    import httpx
    for name, raw in cases:
        r = httpx.post(f"{stack.base}/v1/chat/completions", content=raw,
                       headers={"authorization": f"Bearer {key['key']}", "content-type": "application/json"})
        assert r.status_code == 400, f"{name}: {r.status_code} {r.text}"
        assert r.json()["error"]["type"] == "invalid_request_error", name
    assert stack.balance(org) == before and stack.usage(org) == [] and len(stack.upstream.requests) == 0


def test_unknown_and_disallowed_models_are_400(stack):
    owner = stack.user("owner")
    personal = stack.personal_org(owner)
    key = stack.key(owner, personal)
    r = stack.post(token=key["key"], json={**chat_body(), "model": "gpt-99"})
    assert r.status_code == 400 and "gpt-99" in r.json()["error"]["message"]
    r = stack.post(token=key["key"], json={**chat_body(), "model": "gpt-4o"})
    assert r.status_code == 400 and "plan" in r.json()["error"]["message"], "free plan lists its models"
    assert stack.usage(personal) == [] and len(stack.upstream.requests) == 0
    assert stack.balance(personal) == 1000, "a new user's personal org holds the free plan's 1,000"


def test_out_of_credits_is_402_without_retry(stack):
    owner, org, key = _team_with_key(stack, credits=0)
    client = openai.OpenAI(api_key=key["key"], base_url=f"{stack.base}/v1", max_retries=2)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("expected 402")
    except openai.APIStatusError as err:
        assert err.status_code == 402
        assert err.response.headers["x-should-retry"] == "false"
        assert err.response.json()["error"]["type"] == "insufficient_credits"
    assert len(stack.upstream.requests) == 0, "nothing sent upstream"
    n = stack.sql.execute("select count(*) from credit_reservations where org_id = %s", (org,)).fetchone()[0]
    assert n == 0, "the SDK did not retry and no reservation was left"
    stack.assert_ledger_consistent(org)
