"""The fake upstream's /v1/embeddings and /v1/responses, driven by the real `openai` SDK."""
from __future__ import annotations

import httpx
import openai
import pytest

from lib.local.fake_openai import FakeOpenAI
from tests.support.secrets import SDK_API_KEY


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake):
    return openai.OpenAI(api_key=SDK_API_KEY, base_url=fake.base_url, max_retries=0)


def test_embeddings_shape_and_usage(client):
    out = client.embeddings.create(model="text-embedding-3-small", input=["abcd", "abcdefgh"], dimensions=3)
    assert out.object == "list" and [d.index for d in out.data] == [0, 1] and len(out.data[0].embedding) == 3
    assert out.usage.prompt_tokens == out.usage.total_tokens == 1 + 2
    tokens = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3]])
    assert tokens.usage.prompt_tokens == 3


def test_responses_json_and_stream(client):
    resp = client.responses.create(model="gpt-4o-mini", input="one two three", max_output_tokens=16)
    assert resp.status == "completed" and resp.output_text == "echo: one two three"
    assert resp.usage.output_tokens == 4 and resp.usage.total_tokens == resp.usage.input_tokens + 4
    events = list(client.responses.create(model="gpt-4o-mini", input="a b", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed" and events[-1].response.usage.output_tokens == 3
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "echo: a b"


def test_responses_errors(fake):
    r = httpx.post(f"{fake.base_url}/responses", json={"model": "gpt-4o-mini"},
                   headers={"Authorization": f"Bearer {SDK_API_KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = httpx.post(f"{fake.base_url}/embeddings", json={"model": "m", "input": "x"})
    assert r.status_code == 401
