"""Slow or idle clients never block others (issue 8): the server is async, so 100
connections trickling their headers hold no thread; the HTTP server's own refusals
(oversized or malformed heads, heads that never finish) are our JSON errors. Loopback
only, bounded: every wait has a generous timeout, nothing asserts how fast."""
from __future__ import annotations

import socket
import threading
import time

import httpx

import lib.core.server as server_module
from tests.support.chat import chat_body
from tests.support.credits import money_snapshot


def _address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def _raw(base: str, request: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(_address(base), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _json_error(raw: bytes, status: int) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), raw[:300]
    assert b"application/json" in head.lower(), raw[:300]
    assert body.startswith(b'{"error": {"type":'), raw[:300]
    return body


def test_a_hundred_trickling_clients_block_neither_health_nor_chat(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    stack.set_balance(org, 100_000)
    key = stack.key(owner, org)["key"]
    stop = threading.Event()
    socks = [socket.create_connection(_address(stack.base), timeout=10) for _ in range(100)]

    def trickle() -> None:  # one byte per connection every 0.2 s, headers never finished
        line = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        at = 0
        while not stop.is_set() and at < len(line):
            for s in socks:
                try:
                    s.send(line[at:at + 1])
                except OSError:
                    pass
            at += 1
            stop.wait(0.2)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        time.sleep(0.5)  # every slow connection is open and mid-headers
        with httpx.Client(timeout=5) as client:
            for i in range(5):
                assert client.get(f"{stack.base}/api/health").status_code == 200
                r = client.post(f"{stack.base}/v1/chat/completions", json=chat_body(f"call {i}", max_tokens=4),
                                headers={"authorization": f"Bearer {key}"})
                assert r.status_code == 200, r.text
                with client.stream("POST", f"{stack.base}/v1/chat/completions",
                                   json=chat_body(f"stream {i}", max_tokens=4, stream=True),
                                   headers={"authorization": f"Bearer {key}"}) as s:
                    assert s.status_code == 200 and b"[DONE]" in s.read()
    finally:
        stop.set()
        t.join(5)
        for s in socks:
            s.close()
    assert len(stack.wait_for_usage(org, 10)) == 10
    stack.assert_ledger_consistent(org)


def test_the_servers_own_refusals_are_json(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    stack.set_balance(org, 1000)
    before = money_snapshot(stack.sql, org)
    huge = _raw(stack.base, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + b"x" * 100_000 + b"\r\nContent-Length: 2\r\n\r\n{}")
    assert b"request_headers_too_large" in _json_error(huge, 431)
    nul = _raw(stack.base, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\nContent-Length: 2\r\n\r\n{}")
    _json_error(nul, 400)
    garbage = _raw(stack.base, b"NOT HTTP AT ALL\r\n\r\n")
    _json_error(garbage, 400)
    # under the server's limit but over the handlers' (32 KB): the function's own 431
    r = httpx.post(f"{stack.base}/v1/chat/completions", json=chat_body(), timeout=10,
                   headers={"authorization": "Bearer x", "x-pad": "p" * 40_000})
    assert r.status_code == 431 and r.json()["error"]["type"] == "request_headers_too_large"
    r = httpx.get(f"{stack.base}/api/health", timeout=10, headers={"x-pad": "p" * 40_000})
    assert r.status_code == 431 and r.json()["error"]["type"] == "request_headers_too_large"
    assert money_snapshot(stack.sql, org) == before


def test_headers_that_never_finish_are_dropped_with_a_json_408(stack, monkeypatch):
    monkeypatch.setattr(server_module, "HEADER_TIMEOUT_SECONDS", 0.5)
    with socket.create_connection(_address(stack.base), timeout=10) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert b"request_timeout" in _json_error(out, 408)
