"""The fake OpenAI upstream, driven by the real `openai` SDK (and raw httpx where the SDK hides details)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from lib.local.fake_openai import FakeOpenAI, count_prompt_tokens, message_text
from tests.support.secrets import SDK_API_KEY

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {SDK_API_KEY}"}


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake):
    fake.clear_requests()
    return openai.OpenAI(api_key=SDK_API_KEY, base_url=fake.base_url, max_retries=0, timeout=10)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def sse_payloads(lines: list[str]) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded except the literal [DONE]."""
    out = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def read_stream(fake: FakeOpenAI, body: dict, headers: dict) -> tuple[list, Exception | None]:
    """POST a streaming request with httpx; return the payloads received and the read error, if any."""
    lines, error = [], None
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", json=body, headers={**AUTH, **headers}, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        try:
            for line in r.iter_lines():
                lines.append(line)
        except httpx.HTTPError as exc:
            error = exc
    return sse_payloads(lines), error


def test_non_streaming_completion_shape_and_usage(client, fake):
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there world"}])
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == "gpt-4o-mini"
    assert r.system_fingerprint and r.service_tier == "default"
    [choice] = r.choices
    assert choice.index == 0 and choice.finish_reason == "stop" and choice.logprobs is None
    assert choice.message.role == "assistant" and choice.message.refusal is None
    assert choice.message.content == "echo: hello there world"
    # ceil(8/4)+3 + ceil(17/4)+3 + 3
    assert r.usage.prompt_tokens == 2 + 3 + 5 + 3 + 3
    assert r.usage.completion_tokens == 4 == len(choice.message.content.split())
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details.reasoning_tokens == 0
    raw = fake.requests[-1]
    assert raw["path"] == "/v1/chat/completions" and raw["body"]["model"] == "gpt-4o-mini"


def test_reply_is_deterministic_and_capped_at_16_words_by_default(client):
    text = " ".join(f"w{i}" for i in range(40))
    first = client.chat.completions.create(model="gpt-4o", messages=user(text))
    second = client.chat.completions.create(model="gpt-4o", messages=user(text))
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage.model_dump() == second.usage.model_dump()
    assert first.id != second.id, "every completion gets its own id"
    assert first.usage.completion_tokens == 16 and first.choices[0].finish_reason == "stop"
    assert first.choices[0].message.content.split()[:3] == ["echo:", "w0", "w1"]


def test_reply_echoes_last_user_message_with_text_parts(client):
    r = client.chat.completions.create(model="gpt-4o", messages=[
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [{"type": "text", "text": "second one"}]},
    ])
    assert r.choices[0].message.content == "echo: second one"


def test_streaming_with_include_usage(client, fake):
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=user("one two three"), stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    *content_chunks, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in content_chunks), "only the final chunk carries usage"
    assert all(c.object == "chat.completion.chunk" and c.id == last.id for c in chunks)
    assert content_chunks[0].choices[0].delta.role == "assistant" and content_chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == "echo: one two three"
    assert len(content_chunks) == 1 + 4 + 1, "role chunk, one chunk per word, finish chunk"
    assert content_chunks[-1].choices[0].finish_reason == "stop"
    assert last.usage.completion_tokens == 4
    assert last.usage.prompt_tokens == count_prompt_tokens(user("one two three"))
    assert fake.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_streaming_without_include_usage_has_no_usage_chunk(fake):
    payloads, error = read_stream(fake, {"model": "gpt-4o", "messages": user("a b"), "stream": True}, {})
    assert error is None and payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    assert all(c["choices"] for c in chunks), "no choices == [] usage chunk"
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_n_choices_multiplies_completion_tokens(client):
    r = client.chat.completions.create(model="gpt-4o", messages=user("alpha beta"), n=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert {c.message.content for c in r.choices} == {"echo: alpha beta"}
    assert r.usage.completion_tokens == 2 * 3

    chunks = list(client.chat.completions.create(model="gpt-4o", messages=user("alpha beta"), n=2, stream=True,
                                                 stream_options={"include_usage": True}))
    texts = {0: "", 1: ""}
    for c in chunks[:-1]:
        texts[c.choices[0].index] += c.choices[0].delta.content or ""
    assert texts == {0: "echo: alpha beta", 1: "echo: alpha beta"}
    assert chunks[-1].usage.completion_tokens == 6


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_limits_completion_tokens(client, param):
    r = client.chat.completions.create(model="gpt-4o", messages=user("a b c d e f g h"), **{param: 3})
    assert r.usage.completion_tokens == 3
    assert r.choices[0].message.content == "echo: a b"
    assert r.choices[0].finish_reason == "length"
    roomy = client.chat.completions.create(model="gpt-4o", messages=user("a b"), **{param: 50})
    assert roomy.usage.completion_tokens == 3 and roomy.choices[0].finish_reason == "stop"


def test_cached_and_reasoning_token_headers(client):
    r = client.chat.completions.create(model="o3-mini", messages=user("x y"), extra_headers={
        "x-fake-cached-tokens": "4", "x-fake-reasoning-tokens": "7"})
    assert r.usage.prompt_tokens_details.cached_tokens == 4
    assert r.usage.completion_tokens_details.reasoning_tokens == 7
    assert r.usage.completion_tokens == 3 + 7, "reasoning tokens are part of completion_tokens"
    capped = client.chat.completions.create(model="o3-mini", messages=user("x"), extra_headers={
        "x-fake-cached-tokens": "100000"})
    assert capped.usage.prompt_tokens_details.cached_tokens == capped.usage.prompt_tokens
    # reasoning counts against max_completion_tokens, like OpenAI
    squeezed = client.chat.completions.create(model="o3-mini", messages=user("a b c"), max_completion_tokens=5,
                                              extra_headers={"x-fake-reasoning-tokens": "4"})
    assert squeezed.usage.completion_tokens == 5 and squeezed.choices[0].message.content == "echo:"
    assert squeezed.choices[0].finish_reason == "length"


def test_error_injection_maps_to_sdk_exceptions(client):
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=user("hi"), extra_headers={"x-fake-status": "429"})
    assert exc.value.status_code == 429
    assert exc.value.body["type"] == "rate_limit_error" and exc.value.body["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=user("hi"), extra_headers={
            "x-fake-status": "429", "x-fake-error-code": "insufficient_quota"})
    assert exc.value.body["code"] == "insufficient_quota"
    for status in (500, 503):
        with pytest.raises(openai.InternalServerError) as exc:
            client.chat.completions.create(model="gpt-4o", messages=user("hi"), extra_headers={"x-fake-status": str(status)})
        assert exc.value.status_code == status and exc.value.body["type"] == "server_error"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=user("hi"), extra_headers={"x-fake-status": "400"})
    assert exc.value.body["type"] == "invalid_request_error"


def test_delay_header_triggers_client_timeout(fake):
    slow = openai.OpenAI(api_key=SDK_API_KEY, base_url=fake.base_url, max_retries=0, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        slow.chat.completions.create(model="gpt-4o", messages=user("hi"), extra_headers={"x-fake-delay-ms": "1500"})
    assert time.monotonic() - started < 1.4


def test_missing_auth_is_401_with_openai_error_body(fake):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        r = httpx.post(f"{fake.base_url}/chat/completions", json={"model": "gpt-4o", "messages": user("hi")}, headers=headers)
        assert r.status_code == 401
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{fake.base_url}/models").status_code == 401


@pytest.mark.parametrize("body, param", [
    ({"messages": user("hi")}, "model"),
    ({"model": "gpt-4o", "messages": []}, "messages"),
    ({"model": "gpt-4o", "messages": "hi"}, "messages"),
    ({"model": "gpt-4o", "messages": ["hi"]}, "messages[0]"),
    ({"model": "gpt-4o", "messages": user("hi"), "n": 0}, "n"),
    ({"model": "gpt-4o", "messages": user("hi"), "max_tokens": "5"}, "max_tokens"),
    ([1, 2], None),
])
def test_bad_body_is_400(fake, body, param):
    r = httpx.post(f"{fake.base_url}/chat/completions", json=body, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == param


def test_unparseable_json_is_400_and_recorded_raw(fake):
    fake.clear_requests()
    r = httpx.post(f"{fake.base_url}/chat/completions", content=b"{not json", headers=AUTH)
    assert r.status_code == 400 and "error" in r.json()
    assert fake.requests[-1]["body"] == "{not json"


@pytest.mark.parametrize("messages", [
    user("hi"),
    user(""),
    user("héllo wörld, ça va ? " * 7),
    user("日本語のテキストです。絵文字も 🎉🚀👍"),
    [{"role": "system", "content": "Ω" * 33}, {"role": "user", "content": "a"}, {"role": "assistant", "content": None}],
    [{"role": "user", "content": [{"type": "text", "text": "¿qué?"}, {"type": "image_url", "image_url": {"url": "x"}}]}],
])
def test_prompt_tokens_bounded_by_utf8_bytes(client, messages):
    r = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    text_bytes = sum(len(message_text(m).encode("utf-8")) for m in messages)
    assert 0 < r.usage.prompt_tokens <= text_bytes + 8 * len(messages) + 8
    assert r.usage.prompt_tokens == count_prompt_tokens(messages)


def test_requests_are_recorded_with_headers_and_bounded(client, fake):
    client.chat.completions.create(model="gpt-4o", messages=user("record me"), stream=True,
                                   stream_options={"include_usage": True}, extra_headers={"x-trace": "abc"}).close()
    rec = fake.requests[-1]
    assert rec["body"]["stream"] is True and rec["body"]["stream_options"]["include_usage"] is True
    assert rec["headers"]["authorization"] == f"Bearer {SDK_API_KEY}" and rec["headers"]["x-trace"] == "abc"

    with FakeOpenAI(record_limit=3) as small:
        threads = [threading.Thread(target=httpx.post, args=(f"{small.base_url}/chat/completions",),
                                    kwargs={"json": {"model": "gpt-4o", "messages": user(f"m{i}")}, "headers": AUTH})
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(small.requests) == 3, "only the last record_limit requests are kept"
        httpx.post(f"{small.base_url}/chat/completions", json={"model": "gpt-4o", "messages": user("last")}, headers=AUTH)
        assert small.requests[-1]["body"]["messages"][0]["content"] == "last"


def test_drop_usage_cuts_stream_without_usage_or_done(fake):
    body = {"model": "gpt-4o", "messages": user("a b c"), "stream": True, "stream_options": {"include_usage": True}}
    payloads, error = read_stream(fake, body, {"x-fake-drop-usage": "1"})
    assert isinstance(error, httpx.RemoteProtocolError), "the connection is dropped mid-body"
    assert "[DONE]" not in payloads and all(p["choices"] for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop" and len(payloads) == 1 + 4 + 1

    clean, error = read_stream(fake, body, {"x-fake-drop-usage": "1", "x-fake-disconnect-mode": "clean"})
    assert error is None and len(clean) == len(payloads) and "[DONE]" not in clean


def test_disconnect_after_k_chunks(fake):
    body = {"model": "gpt-4o", "messages": user("a b c d e"), "stream": True, "stream_options": {"include_usage": True}}
    payloads, error = read_stream(fake, body, {"x-fake-disconnect-after": "3"})
    assert error is not None and len(payloads) == 3 and "[DONE]" not in payloads
    assert all(p["usage"] is None for p in payloads)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{fake.base_url}/chat/completions", json={"model": "gpt-4o", "messages": user("x")},
                   headers={**AUTH, "x-fake-disconnect-after": "0"}, timeout=5)
    sdk = openai.OpenAI(api_key=SDK_API_KEY, base_url=fake.base_url, max_retries=0, timeout=5)
    with pytest.raises(openai.APIConnectionError):
        list(sdk.chat.completions.create(model="gpt-4o", messages=user("a b c"), stream=True,
                                         extra_headers={"x-fake-disconnect-after": "2"}))


def test_latency_and_chunk_delay():
    with FakeOpenAI(latency_ms=150, chunk_delay_ms=40) as slow:
        started = time.monotonic()
        r = httpx.post(f"{slow.base_url}/chat/completions", json={"model": "gpt-4o", "messages": user("hi")}, headers=AUTH)
        assert r.status_code == 200 and time.monotonic() - started >= 0.15
        started = time.monotonic()
        with httpx.stream("POST", f"{slow.base_url}/chat/completions", headers=AUTH,
                          json={"model": "gpt-4o", "messages": user("a b c d"), "stream": True}) as resp:
            first_byte = None
            for line in resp.iter_lines():
                first_byte = first_byte or time.monotonic()
        total = time.monotonic() - started
    assert first_byte - started >= 0.15, "latency comes before the response starts"
    assert total >= 0.15 + 6 * 0.04, "7 chunks (role, 5 words, finish) => 6 gaps between chunks"


def test_models_listing_and_unknown_path(fake):
    r = httpx.get(f"{fake.base_url}/models", headers=AUTH)
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert {"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o3-mini"} <= {m["id"] for m in r.json()["data"]}
    assert httpx.get(f"{fake.base_url}/nope", headers=AUTH).status_code == 404
    # the unversioned path works too
    base = fake.base_url.removesuffix("/v1")
    ok = httpx.post(f"{base}/chat/completions", json={"model": "gpt-4o", "messages": user("hi")}, headers=AUTH)
    assert ok.status_code == 200 and ok.json()["object"] == "chat.completion"


def test_stop_and_cli_serve_forever():
    server = FakeOpenAI()
    base = server.start()
    assert httpx.get(f"{base}/models", headers=AUTH).status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/models", headers=AUTH, timeout=2)

    proc = subprocess.Popen([sys.executable, "-c", "import sys; from lib.local.fake_openai import main; "
                             "sys.exit(main(['--port', '0', '--quiet', '--latency-ms', '1']))"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line
        cli_base = line.split("listening on ")[1].strip()
        r = httpx.post(f"{cli_base}/chat/completions", json={"model": "gpt-4o", "messages": user("cli")}, headers=AUTH)
        assert r.json()["choices"][0]["message"]["content"] == "echo: cli"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
