"""`POST /v1/embeddings` and `POST /v1/responses` (issue 12) through the unmodified OpenAI
SDK, streaming and not: metered through the same reserve -> forward -> settle path as
chat, charged exactly from the upstream usage (the Responses stream's from its
`response.completed` event), and under the same per-key controls."""
from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.chat import expected_cost
from tests.support.clock import early_in_a_minute
from tests.support.metering import ceil, credits_per_usd

EMBED_PRICE = ("0.02", "0.02", "0")


def _team_with_key(stack, **kw):
    owner = stack.user("owner")
    org = stack.team(owner)
    stack.set_balance(org, 100_000)
    return org, stack.key(owner, org, **kw)


def _client(stack, key) -> openai.OpenAI:
    return openai.OpenAI(api_key=key["key"], base_url=f"{stack.base}/v1", max_retries=0)


def _credits(stack, cost) -> int:
    return ceil(cost * credits_per_usd(stack.sql))


def test_embeddings_through_the_sdk_are_charged_per_input_token(stack):
    org, key = _team_with_key(stack)
    out = _client(stack, key).embeddings.create(model="text-embedding-3-small",
                                                input=["the quick brown fox", "jumps over the lazy dog"], dimensions=4)
    assert [len(d.embedding) for d in out.data] == [4, 4] and out.usage.prompt_tokens > 0
    [row] = stack.wait_for_usage(org)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (out.usage.prompt_tokens, 0)
    assert row["cost_usd"] == expected_cost(out.usage.prompt_tokens, 0, model=EMBED_PRICE)
    assert row["credits"] == _credits(stack, row["cost_usd"]) and stack.balance(org) == 100_000 - row["credits"]
    endpoint = stack.sql.execute("select endpoint from api_requests where request_id = %s",
                                 (row["request_id"],)).fetchone()[0]
    assert endpoint == "/v1/embeddings"
    stack.assert_ledger_consistent(org)


def test_responses_through_the_sdk_not_streaming(stack):
    org, key = _team_with_key(stack)
    resp = _client(stack, key).responses.create(model="gpt-4o-mini", input="say these words back please",
                                                max_output_tokens=20)
    assert resp.output_text.startswith("echo:") and resp.usage is not None
    [row] = stack.wait_for_usage(org)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (resp.usage.input_tokens, resp.usage.output_tokens)
    assert row["cost_usd"] == expected_cost(resp.usage.input_tokens, resp.usage.output_tokens)
    assert not row["estimated"] and not row["stream"] and row["upstream_id"] == resp.id
    assert stack.balance(org) == 100_000 - row["credits"]
    stack.assert_ledger_consistent(org)


def test_responses_streaming_is_charged_from_response_completed(stack):
    org, key = _team_with_key(stack)
    events = list(_client(stack, key).responses.create(model="gpt-4o-mini", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "one two three four five"}]}], stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    usage = events[-1].response.usage
    [row] = stack.wait_for_usage(org)
    assert row["stream"] and not row["estimated"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert row["cost_usd"] == expected_cost(usage.input_tokens, usage.output_tokens)
    sent = next(r for r in stack.upstream.requests if r["path"].endswith("/responses"))
    assert sent["body"]["max_output_tokens"] >= 16, "no limit given: what the balance affords is sent upstream"
    stack.assert_ledger_consistent(org)


def test_a_responses_stream_cut_before_completed_is_charged_an_estimate(stack):
    org, key = _team_with_key(stack)
    stack.upstream.default_headers = {"x-fake-disconnect-after": "2"}
    r = httpx.post(f"{stack.base}/v1/responses", timeout=30, headers={"authorization": f"Bearer {key['key']}"},
        json={"model": "gpt-4o-mini", "input": "one two three four five six", "stream": True})
    assert r.status_code == 200 and "response.completed" not in r.text
    [row] = stack.wait_for_usage(org)
    assert row["estimated"] and row["status"] == "upstream_interrupted" and row["completion_tokens"] == 2
    stack.assert_ledger_consistent(org)


@pytest.mark.parametrize("path, body", [
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello"}),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "hello", "max_output_tokens": 16}),
])
def test_per_key_controls_apply_to_the_new_endpoints(stack, path, body):
    org, key = _team_with_key(stack, models=["gpt-4.1-nano"], rpm=1)
    early_in_a_minute()  # the allowed call and the refused one in one rate window
    r = httpx.post(f"{stack.base}{path}", json=body, headers={"authorization": f"Bearer {key['key']}"}, timeout=30)
    assert r.status_code == 403 and r.json()["error"]["type"] == "model_not_allowed"
    stack.sql.execute("update api_keys set models = null where id = %s", (key["id"],))
    ok = httpx.post(f"{stack.base}{path}", json=body, headers={"authorization": f"Bearer {key['key']}"}, timeout=30)
    assert ok.status_code == 200, ok.text
    again = httpx.post(f"{stack.base}{path}", json=body, headers={"authorization": f"Bearer {key['key']}"}, timeout=30)
    assert again.status_code == 429 and "retry-after" in again.headers
    stack.assert_ledger_consistent(org)


@pytest.mark.parametrize("path, body", [
    ("/v1/embeddings", {"model": "text-embedding-3-small"}),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": []}),
    ("/v1/responses", {"model": "gpt-4o-mini"}),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "x", "max_output_tokens": 0}),
])
def test_bad_bodies_are_400_and_hold_nothing(stack, path, body):
    org, key = _team_with_key(stack)
    r = httpx.post(f"{stack.base}{path}", json=body, headers={"authorization": f"Bearer {key['key']}"}, timeout=30)
    assert r.status_code == 400
    assert stack.balance(org) == 100_000
    stack.assert_ledger_consistent(org)


def test_upstream_failure_releases_the_reservation(stack):
    org, key = _team_with_key(stack)
    stack.upstream.default_headers = {"x-fake-status": "500"}
    r = httpx.post(f"{stack.base}/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"},
                   headers={"authorization": f"Bearer {key['key']}"}, timeout=30)
    assert r.status_code == 502
    assert stack.balance(org) == 100_000
    stack.assert_ledger_consistent(org)
