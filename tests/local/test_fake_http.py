"""The fakes' HTTP server (lib.local.fake_http) on a raw socket: keep-alive, pipelining,
one send per answer, cuts, malformed input, stop."""
from __future__ import annotations

import json
import socket

import pytest

from lib.local.fake_http import Cut, FakeHttpServer, FakeReply, FakeRequest, Pause, json_reply


def handler(request: FakeRequest) -> FakeReply:
    if request.path == "/cut":
        return FakeReply(200, {}, None, iter([Cut()]))
    if request.path == "/stream":
        clean = request.header("x-clean") == "1"
        return FakeReply(200, {"content-type": "text/event-stream"}, None,
                         iter([b"data: 1\n\n", Pause(0.01), b"data: 2\n\n", Cut(clean)]))
    return json_reply({"path": request.path, "method": request.method, "body": request.body.decode(),
                       "auth": request.header("Authorization")})


@pytest.fixture
def server():
    s = FakeHttpServer(handler)
    s.start()
    yield s
    s.stop()


def connect(server: FakeHttpServer) -> socket.socket:
    assert server.address is not None
    sock = socket.create_connection(server.address, timeout=5)
    return sock


def post(path: str, body: bytes = b"{}", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_each_answer_leaves_in_one_send_and_the_connection_stays_open(server):
    with connect(server) as sock:
        for n in range(3):
            sock.sendall(post(f"/v1/x{n}", b'{"a": 1}'))
            answer = sock.recv(65536)  # one send: the whole answer is in the first read
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: %d" % len(body) in head
            assert json.loads(body) == {"path": f"/v1/x{n}", "method": "POST", "body": '{"a": 1}', "auth": "Bearer k"}


def test_pipelined_requests_are_answered_in_order(server):
    with connect(server) as sock:
        sock.sendall(post("/first") + post("/second", extra="connection: close\r\n"))
        answers = read_all(sock)
    assert answers.count(b"HTTP/1.1 200 OK") == 2
    assert answers.index(b'"/first"') < answers.index(b'"/second"'), "in the order asked; closed after the last"


def test_a_cut_before_any_chunk_ends_the_connection_without_an_answer(server):
    with connect(server) as sock:
        sock.sendall(post("/cut"))
        assert read_all(sock) == b""


@pytest.mark.parametrize("clean", [False, True])
def test_a_stream_is_chunked_and_a_cut_ends_it_cleanly_or_not(server, clean):
    with connect(server) as sock:
        sock.sendall(post("/stream", extra="x-clean: 1\r\n" if clean else ""))
        out = read_all(sock)
    assert b"transfer-encoding: chunked" in out and b"data: 1" in out and b"data: 2" in out
    assert out.endswith(b"0\r\n\r\n") is clean, "a clean cut ends the body; the other leaves it broken off"


def test_malformed_request_is_a_json_400_and_the_connection_closes(server):
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        out = read_all(sock)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"]["message"] == "malformed HTTP request"


def test_stop_closes_idle_keep_alive_connections_and_the_listener():
    s = FakeHttpServer(handler)
    address = s.start()
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(post("/x"))
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    s.stop()
    assert sock.recv(65536) == b"", "the idle keep-alive connection is closed"
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2)
