"""A client connection's writes of one event-loop turn leave in one send
(lib.core.coalesce): uvicorn's two writes per response (headers, then body) become one.
Against a recording transport, and end to end through `tollbooth serve`'s protocol on a
real socket."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest
from starlette.responses import JSONResponse

from lib.core.coalesce import CoalescingTransport
from lib.core.server import Mount, build_server


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "nothing is written after close"
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


def _wrapped() -> tuple[RecordingTransport, CoalescingTransport]:
    """A recording transport and the coalescing one around it (in a running loop)."""
    raw = RecordingTransport()
    return raw, CoalescingTransport(raw)  # type: ignore[arg-type]  # stands in for a transport


async def _turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_writes_of_one_turn_leave_as_one_send_when_the_turn_ends():
    async def go() -> None:
        raw, t = _wrapped()
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(memoryview(b"{}"))
        t.write(b"")
        assert raw.sent == [], "nothing sent before the turn ends"
        assert t.get_write_buffer_size() == 7 + 40, "pending bytes count as buffered"
        await _turn()
        assert raw.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"], "one send, in order"
        t.write(b"data: 1\n\n")
        await _turn()
        t.write(b"data: 2\n\n")
        await _turn()
        assert raw.sent[1:] == [b"data: 1\n\n", b"data: 2\n\n"], "writes of later turns are not held back"
        assert t.get_extra_info("peername") == "extra:peername", "everything else is the transport's"

    asyncio.run(go())


def test_close_sends_what_is_pending_first_and_abort_drops_it():
    async def go() -> None:
        raw, t = _wrapped()
        t.write(b"last words")
        t.close()
        assert (raw.sent, raw.closed) == ([b"last words"], True), "flushed, then closed"
        await _turn()
        assert raw.sent == [b"last words"], "the scheduled flush finds nothing left"

        raw2, t2 = _wrapped()
        t2.write(b"never")
        t2.abort()
        await _turn()
        assert (raw2.sent, raw2.aborted) == ([], True), "an aborted connection sends nothing more"

    asyncio.run(go())


def test_a_write_to_a_connection_closed_meanwhile_is_dropped():
    async def go() -> None:
        raw, t = _wrapped()
        t.write(b"too late")
        raw.closed = True  # the peer went away before the turn ended
        await _turn()
        assert raw.sent == []

    asyncio.run(go())


@pytest.fixture
def served():
    async def hello(_request):
        return JSONResponse({"hello": "world"}, headers={"x-extra": "1"})

    server = build_server("127.0.0.1", 0, [Mount("/hello", "hello", hello)]).start()
    yield server
    server.shutdown()


def test_a_response_through_the_server_is_one_send_and_keep_alive_still_works(served, monkeypatch):
    sends: list[int] = []  # how many writes each send joined
    flush = CoalescingTransport.flush

    def counting_flush(self: CoalescingTransport) -> None:
        if self._pending:
            sends.append(len(self._pending))
        flush(self)

    monkeypatch.setattr(CoalescingTransport, "flush", counting_flush)
    with socket.create_connection(("127.0.0.1", served.server_port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(3):  # three requests on one connection
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 17:
                chunk = s.recv(65536)
                assert chunk, "the server kept the connection open"
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200") and b"x-extra: 1" in head
            assert json.loads(body) == {"hello": "world"}
    assert sends == [2, 2, 2], "each response's headers and body left in one send"
