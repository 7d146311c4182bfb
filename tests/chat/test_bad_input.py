"""Bad input is a 4xx JSON error that changes no balance (issue 8): never a 500, never a
leak of SQL, never forwarded upstream."""
from __future__ import annotations

import os
import signal
import socket

import httpx
import pytest

from tests.support.chat import chat_body
from tests.support.credits import money_snapshot
from tests.support.faults import serve_process
from tests.support.secrets import JWT_SECRET, OPENAI_API_KEY

MSG = [{"role": "user", "content": "hi"}]
BAD_BODIES = {
    "deeply nested": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "x": '
                     + b"[" * 5000 + b"]" * 5000 + b"}",
    "nested past the limit": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "x": '
                             + b"[" * 70 + b"]" * 70 + b"}",
    "lone surrogate": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "NUL in model": b'{"model": "gpt-4o-mini\\u0000", "messages": [{"role": "user", "content": "hi"}]}',
    "NUL in a message": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a\\u0000b"}]}',
    "NUL in a key": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi", "a\\u0000": 1}]}',
    "max_tokens beyond bigint": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], '
                                b'"max_tokens": 9223372036854775808}',
    "a huge integer": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "seed": '
                      + b"9" * 5000 + b"}",
    "NaN": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    "infinite number": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "top_p": 1e999}',
    "max_tokens true": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": true}',
    "n true": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": true}',
    "max_tokens 8.5": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8.5}',
    "an empty message": b'{"model": "gpt-4o-mini", "messages": [{}]}',
    "no messages": b'{"model": "gpt-4o-mini", "messages": []}',
    "a message without content": b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}]}',
    "an unknown role": b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "hi"}]}',
    "a message that is a string": b'{"model": "gpt-4o-mini", "messages": ["hi"]}',
    "not UTF-8": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff"}]}',
    "not an object": b'[1, 2]',
}


@pytest.fixture
def payer(stack):
    return stack.keyed_team()


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_bodies_are_400_json_and_change_nothing(stack, payer, name):
    org, key = payer
    before = money_snapshot(stack.sql, org)
    r = httpx.post(f"{stack.base}/v1/chat/completions", content=BAD_BODIES[name], timeout=30,
                   headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    assert r.status_code == 400, (name, r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "begin_chat_request" not in err["message"], err
    assert money_snapshot(stack.sql, org) == before, "nothing reserved or charged"
    assert stack.upstream.requests == [], "nothing forwarded upstream"


def test_a_completion_limit_above_the_models_maximum_is_400_not_402(stack, payer):
    org, key = payer
    before = money_snapshot(stack.sql, org)
    r = stack.post(token=key, json=chat_body(max_tokens=1_000_000))
    assert r.status_code == 400 and "maximum" in r.json()["error"]["message"], r.text
    assert money_snapshot(stack.sql, org) == before and stack.upstream.requests == []


def test_a_body_over_the_limit_is_413(stack, payer):
    org, key = payer
    before = money_snapshot(stack.sql, org)
    big = chat_body("x" * (4 * 1024 * 1024 + 10))
    r = stack.post(token=key, json=big)
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large", r.text[:200]
    assert money_snapshot(stack.sql, org) == before and stack.upstream.requests == []


def test_a_chunked_body_over_the_limit_is_413(stack, payer):
    org, key = payer

    def chunks():
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(5):
            yield b"x" * (1024 * 1024)
        yield b'"}]}'

    r = httpx.post(f"{stack.base}/v1/chat/completions", content=chunks(), timeout=30,
                   headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    assert r.status_code == 413, r.text[:200]
    assert stack.upstream.requests == []


def test_a_control_character_in_a_header_is_400_json(stack, payer):
    org, key = payer
    r = stack.post(token=key, json=chat_body(max_tokens=2), headers={"x-meeting-id": "a\x01b"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def _raw(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_the_server_answers_malformed_and_oversized_headers_in_json(fresh_dsn, upstream):
    proc, base = serve_process({"DATABASE_URL": fresh_dsn, "OPENAI_BASE_URL": upstream.base_url,
                                "OPENAI_API_KEY": OPENAI_API_KEY, "SUPABASE_JWT_SECRET": JWT_SECRET})
    try:
        big = httpx.post(f"{base}/v1/chat/completions", json=chat_body(),
                         headers={"authorization": "Bearer " + "x" * 100_000}, timeout=10)
        assert big.status_code in (400, 431) and big.headers["content-type"] == "application/json"
        assert big.json()["error"]["type"] in ("request_headers_too_large", "invalid_request_error")
        nul = _raw(base, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\nContent-Length: 2\r\n\r\n{}")
        head, _, body = nul.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, nul[:300]
        assert b'"error"' in body
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
